// attention_token_map_forward(q [B, H, Nq, D], k [B, H, Nk, D], lse f32 [B, H, Nq];
//                             tokens (1–77 key indices), scale = 1/√D) → maps f32 [B, T, Nq]
// attention_token_map_backward(dmaps f32 [B, T, Nq], q, k, lse; tokens, scale) → dq, dk
// maps[b, t, i] = (1/H) Σ_h exp(scale·q_hi·k_h,tokens[t] − lse_hi): the
// head-averaged attention probability of query i on key tokens[t] (for a
// cross-attention: how much image position i looks at prompt token t), read
// from attention_forward's saved lse without the score matrix. The backward is
// the full gradient, including the part through lse:
//   ∂L/∂s_hij = (1/H)·(Σ_t dm_ti·p_hiτt·[j = τt] − c_hi·p_hij),  c_hi = Σ_t dm_ti·p_hiτt
// (τt = tokens[t]; a token listed twice counts twice). Attend-and-Excite's loss
// is built from these maps (DESIGN.md §1.2, several subjects).
#include <cmath>
#include <string>

#include "core/args/attn.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

AttentionTokenMapArgs check_token_map(const char* op, const Tensor& q, const Tensor& k, const Tensor& lse,
                                      const Attrs& attrs) {
  check_float(op, q, "q");
  check_ndim(op, q, "q", 4, "[batch, heads, queries, head_dim]");
  check_matches(op, q, "q", k, "k");
  check_ndim(op, k, "k", 4, "[batch, heads, keys, head_dim]");
  const int64_t B = q.shape[0], H = q.shape[1], Nq = q.shape[2], D = q.shape[3], Nk = k.shape[2];
  if (k.shape[0] != B || k.shape[1] != H || k.shape[3] != D) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": k must be [batch, heads, keys, head_dim] with q's batch, heads and head_dim, got " +
                                       k.describe() + " (q is " + q.describe() + ")");
  }
  check_device(op, q, "q", lse, "lse");
  if (lse.dtype != DType::F32) {
    fail(ErrorCode::DtypeMismatch, std::string(op) + ": lse must be f32 (attention_forward's second output), got " + lse.describe());
  }
  check_shape(op, lse, "lse", {B, H, Nq});
  if (H == 0) fail(ErrorCode::ShapeMismatch, std::string(op) + ": q has no heads: " + q.describe());
  const std::vector<int64_t> tokens = attrs.get_ints(op, "tokens");
  if (tokens.empty() || tokens.size() > static_cast<size_t>(kTokenMapMaxTokens)) {
    bad_attr(op, "tokens must list 1 to " + std::to_string(kTokenMapMaxTokens) + " key indices, got " +
                     std::to_string(tokens.size()));
  }
  AttentionTokenMapArgs args{};
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] < 0 || tokens[t] >= Nk) {
      bad_attr(op, "tokens[" + std::to_string(t) + "] = " + std::to_string(tokens[t]) + " is not a key index of k " +
                       k.describe() + " (0 to " + std::to_string(Nk - 1) + ")");
    }
    args.tokens[t] = static_cast<int32_t>(tokens[t]);
  }
  const double default_scale = 1.0 / std::sqrt(static_cast<double>(D > 0 ? D : 1));
  const double scale = attrs.get_number(op, "scale", default_scale);
  if (!std::isfinite(scale) || std::fabs(scale) > 3.4e38) bad_attr(op, "scale must be a finite f32, got " + std::to_string(scale));
  args.dtype = q.dtype;
  args.q = q.data();
  args.k = k.data();
  args.lse = static_cast<const float*>(lse.data());
  args.batch = B, args.heads = H, args.nq = Nq, args.nk = Nk, args.d = D;
  args.count = static_cast<int32_t>(tokens.size());
  args.scale = static_cast<float>(scale);
  return args;
}

Launch attention_token_map_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "attention_token_map_forward";
  const Tensor& q = input(op, inputs, 0, "q");
  const Tensor& k = input(op, inputs, 1, "k");
  const Tensor& lse = input(op, inputs, 2, "lse");
  AttentionTokenMapArgs args = check_token_map(op, q, k, lse, attrs);
  Tensor maps = Tensor::empty({args.batch, args.count, args.nq}, DType::F32, q.device);
  args.maps = static_cast<float*>(maps.data());
  return kernel_launch(op, q.device, {maps}, {q, k, lse}, args);
}

Launch attention_token_map_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "attention_token_map_backward";
  const Tensor& dmaps = input(op, inputs, 0, "dmaps");
  const Tensor& q = input(op, inputs, 1, "q");
  const Tensor& k = input(op, inputs, 2, "k");
  const Tensor& lse = input(op, inputs, 3, "lse");
  AttentionTokenMapArgs args = check_token_map(op, q, k, lse, attrs);
  check_device(op, q, "q", dmaps, "dmaps");
  if (dmaps.dtype != DType::F32) fail(ErrorCode::DtypeMismatch, std::string(op) + ": dmaps must be f32 (as the maps), got " + dmaps.describe());
  check_shape(op, dmaps, "dmaps", {args.batch, args.count, args.nq});
  Tensor dq = Tensor::empty(q.shape, q.dtype, q.device);
  Tensor dk = Tensor::empty(k.shape, k.dtype, k.device);
  args.dmaps = static_cast<const float*>(dmaps.data());
  args.dq = dq.data();
  args.dk = dk.data();
  return kernel_launch(op, q.device, {dq, dk}, {dmaps, q, k, lse}, args);
}

}  // namespace

IMPRINT_REGISTER_OP(attention_token_map_forward, attention_token_map_forward);
IMPRINT_REGISTER_OP(attention_token_map_backward, attention_token_map_backward);

}  // namespace ops
}  // namespace imprint
