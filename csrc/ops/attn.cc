// attention_forward(q [B, H, Nq, D], k [B, H, Nk, D], v [B, H, Nk, Dv];
//                   scale = 1/√D, causal = false) → o [B, H, Nq, Dv], lse [B, H, Nq] (f32)
// attention_backward(do [B, H, Nq, Dv], q, k, v, o, lse; scale, causal) → dq, dk, dv
// o = softmax(q·kᵀ·scale + mask)·v, where the causal mask lets query i see keys
// j ≤ i + (Nk − Nq) (bottom-right aligned). Rows that see no key give o = 0 and
// lse = -inf, and no gradient.
#include <cmath>

#include "core/args/attn.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

struct AttentionShapes {
  int64_t batch, heads, nq, nk, d, dv;
};

AttentionShapes check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  check_float(op, q);
  check_ndim(op, q, "q", 4, "[batch, heads, queries, head_dim]");
  check_matches(op, q, "q", k, "k");
  check_ndim(op, k, "k", 4, "[batch, heads, keys, head_dim]");
  check_matches(op, q, "q", v, "v");
  check_ndim(op, v, "v", 4, "[batch, heads, keys, value_dim]");
  const AttentionShapes s{q.shape[0], q.shape[1], q.shape[2], k.shape[2], q.shape[3], v.shape[3]};
  if (k.shape[0] != s.batch || k.shape[1] != s.heads || k.shape[3] != s.d) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": k must be [batch, heads, keys, head_dim] with q's batch " +
                                       std::to_string(s.batch) + ", heads " + std::to_string(s.heads) +
                                       " and head_dim " + std::to_string(s.d) + ", got " + k.describe() +
                                       " (q is " + q.describe() + ")");
  }
  if (v.shape[0] != s.batch || v.shape[1] != s.heads || v.shape[2] != s.nk) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": v must be [batch, heads, keys, value_dim] with q's batch " +
                                       std::to_string(s.batch) + ", heads " + std::to_string(s.heads) +
                                       " and k's key count " + std::to_string(s.nk) + ", got " + v.describe() +
                                       " (k is " + k.describe() + ")");
  }
  return s;
}

struct AttentionAttrs {
  float scale;
  bool causal;
};

AttentionAttrs attention_attrs(const char* op, const Attrs& attrs, int64_t d) {
  // D = 0 makes every score 0 whatever the scale; 1 keeps the default finite.
  const double default_scale = 1.0 / std::sqrt(static_cast<double>(d > 0 ? d : 1));
  const double scale = attrs.get_number(op, "scale", default_scale);
  if (std::fabs(scale) > 3.4e38) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": scale " + std::to_string(scale) + " does not fit in f32");
  }
  return {static_cast<float>(scale), attrs.get_bool(op, "causal", false)};
}

Launch attention_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "attention_forward";
  const Tensor& q = input(op, inputs, 0, "q");
  const Tensor& k = input(op, inputs, 1, "k");
  const Tensor& v = input(op, inputs, 2, "v");
  const AttentionShapes s = check_qkv(op, q, k, v);
  const AttentionAttrs a = attention_attrs(op, attrs, s.d);
  Tensor o = Tensor::empty({s.batch, s.heads, s.nq, s.dv}, q.dtype, q.device);
  Tensor lse = Tensor::empty({s.batch, s.heads, s.nq}, DType::F32, q.device);
  AttentionForwardArgs args{q.dtype, q.data(), k.data(), v.data(), o.data(), static_cast<float*>(lse.data()),
                            s.batch, s.heads, s.nq, s.nk, s.d, s.dv, a.scale, a.causal};
  return kernel_launch("attention_forward", q.device, {o, lse}, {q, k, v}, args);
}

Launch attention_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "attention_backward";
  const Tensor& dout = input(op, inputs, 0, "do");
  const Tensor& q = input(op, inputs, 1, "q");
  const Tensor& k = input(op, inputs, 2, "k");
  const Tensor& v = input(op, inputs, 3, "v");
  const Tensor& o = input(op, inputs, 4, "o");
  const Tensor& lse = input(op, inputs, 5, "lse");
  const AttentionShapes s = check_qkv(op, q, k, v);
  const AttentionAttrs a = attention_attrs(op, attrs, s.d);
  check_matches(op, q, "q", dout, "do");
  check_shape(op, dout, "do", {s.batch, s.heads, s.nq, s.dv});
  check_matches(op, q, "q", o, "o");
  check_shape(op, o, "o", {s.batch, s.heads, s.nq, s.dv});
  if (lse.device != q.device) {
    fail(ErrorCode::DeviceMismatch, std::string(op) + ": lse is " + lse.describe() + " but q is " + q.describe() +
                                        "; put them on one device");
  }
  if (lse.dtype != DType::F32) {
    fail(ErrorCode::DtypeMismatch, std::string(op) + ": lse must be f32 (as attention_forward returns it), got " +
                                       lse.describe());
  }
  check_shape(op, lse, "lse", {s.batch, s.heads, s.nq});
  Tensor dq = Tensor::empty(q.shape, q.dtype, q.device);
  Tensor dk = Tensor::empty(k.shape, k.dtype, k.device);
  Tensor dv = Tensor::empty(v.shape, v.dtype, v.device);
  AttentionBackwardArgs args{q.dtype, dout.data(), q.data(), k.data(), v.data(), o.data(),
                             static_cast<const float*>(lse.data()), dq.data(), dk.data(), dv.data(),
                             s.batch, s.heads, s.nq, s.nk, s.d, s.dv, a.scale, a.causal};
  return kernel_launch("attention_backward", q.device, {dq, dk, dv}, {dout, q, k, v, o, lse}, args);
}

}  // namespace

IMPRINT_REGISTER_OP(attention_forward, attention_forward);
IMPRINT_REGISTER_OP(attention_backward, attention_backward);

}  // namespace ops
}  // namespace imprint
