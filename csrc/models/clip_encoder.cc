// The CLIP transformer encoder's layers, forward and backward (see clip_encoder.h).
#include "models/clip_encoder.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/args/norm.h"
#include "core/backend.h"
#include "core/error.h"
#include "models/model_util.h"
#include "ops/op_util.h"

namespace imprint {
namespace models {
namespace {

Tensor add(const Tensor& a, const Tensor& b) { return run_now(ops::binary(BinaryOp::Add, a, b)).front(); }

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) { return run_op("linear_forward", {&x, &w, &b}).front(); }

ops::Attrs attention_attrs(const ClipEncoderOptions& o, int64_t hd) {
  ops::Attrs a;
  a.numbers["causal"] = o.causal ? 1 : 0;
  a.numbers["scale"] = 1.0 / std::sqrt(static_cast<double>(hd));
  return a;
}

// A layer norm's or linear's backward (`op`), with dweight / dbias only when wanted.
Tensor param_backward(const char* op, const ops::OpInputs& inputs, size_t wi, WeightGrads& g) {
  ops::Attrs a;
  const bool gw = g.want[wi], gb = g.want[wi + 1];
  a.numbers["weightGrad"] = gw;
  a.numbers["biasGrad"] = gb;
  std::vector<Tensor> r = run_op(op, inputs, a);
  size_t k = 1;
  if (gw) g.put(wi, r[k++]);
  if (gb) g.put(wi + 1, r[k++]);
  return r[0];
}

}  // namespace

std::pair<Tensor, Tensor> layer_norm_into(const Tensor& x, const Tensor& w, const Tensor& b, double eps, Tensor& out) {
  const int64_t d = x.shape.back();
  const int64_t rows = d == 0 ? 0 : x.numel() / d;
  Tensor mean = Tensor::empty({rows}, DType::F32, x.device);
  Tensor rstd = Tensor::empty({rows}, DType::F32, x.device);
  LayerNormForwardArgs args{x.dtype, x.data(), w.data(), b.data(), out.data(), mean.data(), rstd.data(), rows, d, eps};
  find_kernel("layer_norm_forward", x.device)(&args);
  backend_for(x.device).synchronize();
  return {mean, rstd};
}

void WeightGrads::put(size_t i, const Tensor& t) { got[i] = got[i].storage ? add(got[i], t) : t; }

void WeightGrads::want_trainable(const std::string& pre, size_t n_weights, const std::vector<int64_t>& trainable) {
  want.assign(n_weights + 1, false);
  got.assign(n_weights + 1, Tensor());
  for (size_t i = 0; i < trainable.size(); ++i) {
    const int64_t t = trainable[i];
    if (t < 0 || static_cast<size_t>(t) >= n_weights) {
      fail(ErrorCode::InvalidArgument, pre + "trainable[" + std::to_string(i) + "] = " + std::to_string(t) +
                                           " is not a weight index (0 to " + std::to_string(n_weights - 1) + ")");
    }
    if (i > 0 && t <= trainable[i - 1]) fail(ErrorCode::InvalidArgument, pre + "trainable must be ascending without repeats");
    want[static_cast<size_t>(t)] = true;
  }
}

void WeightGrads::copy_out(const std::vector<int64_t>& trainable, const std::vector<Tensor>& out) const {
  for (size_t i = 0; i < trainable.size(); ++i) {
    Tensor g = got[static_cast<size_t>(trainable[i])];
    if (!g.storage) g = run_now(ops::full(out[i].shape, out[i].dtype, out[i].device, 0.0)).front();
    backend_for(g.device).copy_on_device(out[i].data(), g.data(), g.nbytes());
  }
}

void clip_check_weight(const char* op, const Tensor& ref, const Tensor& t, const std::string& name, const Shape& shape) {
  if (t.dtype != ref.dtype || t.device != ref.device) {
    fail(ErrorCode::DtypeMismatch, std::string(op) + ": " + name + " is " + t.describe() + " but the model's other weights are " +
                                       ref.describe() + "; every weight must share one dtype and device");
  }
  if (t.shape != shape) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": " + name + " must be " + shape_str(shape) + ", got " + t.describe());
  }
}

ClipLayerWeights clip_layer_weights_from_inputs(const char* op, const std::vector<const Tensor*>& inputs, size_t first) {
  ClipLayerWeights lw;
  Tensor* slots[kClipLayerWeights] = {&lw.ln1_w, &lw.ln1_b, &lw.q_w,   &lw.q_b,   &lw.k_w,   &lw.k_b,
                                      &lw.v_w,   &lw.v_b,   &lw.out_w, &lw.out_b, &lw.ln2_w, &lw.ln2_b,
                                      &lw.fc1_w, &lw.fc1_b, &lw.fc2_w, &lw.fc2_b};
  for (size_t j = 0; j < kClipLayerWeights; ++j) {
    *slots[j] = ops::input(op, inputs, first + j, ("input " + std::to_string(first + j)).c_str());
  }
  return lw;
}

void clip_layer_check(const char* op, const Tensor& ref, const ClipLayerWeights& l, const std::string& p, int64_t H,
                      int64_t I) {
  clip_check_weight(op, ref, l.ln1_w, p + "layer_norm1.weight", {H});
  clip_check_weight(op, ref, l.ln1_b, p + "layer_norm1.bias", {H});
  clip_check_weight(op, ref, l.q_w, p + "self_attn.q_proj.weight", {H, H});
  clip_check_weight(op, ref, l.q_b, p + "self_attn.q_proj.bias", {H});
  clip_check_weight(op, ref, l.k_w, p + "self_attn.k_proj.weight", {H, H});
  clip_check_weight(op, ref, l.k_b, p + "self_attn.k_proj.bias", {H});
  clip_check_weight(op, ref, l.v_w, p + "self_attn.v_proj.weight", {H, H});
  clip_check_weight(op, ref, l.v_b, p + "self_attn.v_proj.bias", {H});
  clip_check_weight(op, ref, l.out_w, p + "self_attn.out_proj.weight", {H, H});
  clip_check_weight(op, ref, l.out_b, p + "self_attn.out_proj.bias", {H});
  clip_check_weight(op, ref, l.ln2_w, p + "layer_norm2.weight", {H});
  clip_check_weight(op, ref, l.ln2_b, p + "layer_norm2.bias", {H});
  clip_check_weight(op, ref, l.fc1_w, p + "mlp.fc1.weight", {I, H});
  clip_check_weight(op, ref, l.fc1_b, p + "mlp.fc1.bias", {I});
  clip_check_weight(op, ref, l.fc2_w, p + "mlp.fc2.weight", {H, I});
  clip_check_weight(op, ref, l.fc2_b, p + "mlp.fc2.bias", {H});
}

Tensor clip_layers_forward(const ClipEncoderOptions& o, const std::vector<ClipLayerWeights>& layers, Tensor x,
                           std::vector<ClipLayerActivations>& acts) {
  const int64_t B = x.shape[0], T = x.shape[1], H = x.shape[2];
  const int64_t hd = H / o.heads;
  const ops::Attrs attn_attrs = attention_attrs(o, hd);
  ops::Attrs ln_attrs;
  ln_attrs.numbers["eps"] = o.eps;
  const char* act_op = o.quick_gelu ? "quick_gelu_forward" : "gelu_forward";
  for (const ClipLayerWeights& l : layers) {
    ClipLayerActivations a;
    a.x = x;
    std::vector<Tensor> ln1 = run_op("layer_norm_forward", {&x, &l.ln1_w, &l.ln1_b}, ln_attrs);
    a.ln1 = ln1[0], a.ln1_mean = ln1[1], a.ln1_rstd = ln1[2];
    // [B, T, H] → [B, T, heads, hd] → [B, heads, T, hd]
    auto split = [&](const Tensor& t) { return swap_dims12(ops::reshape(t, {B, T, o.heads, hd})); };
    a.q = split(linear(a.ln1, l.q_w, l.q_b));
    a.k = split(linear(a.ln1, l.k_w, l.k_b));
    a.v = split(linear(a.ln1, l.v_w, l.v_b));
    std::vector<Tensor> attn = run_op("attention_forward", {&a.q, &a.k, &a.v}, attn_attrs);
    a.attn_o = attn[0], a.attn_lse = attn[1];
    a.attn_merged = ops::reshape(swap_dims12(a.attn_o), {B, T, H});
    a.h = add(x, linear(a.attn_merged, l.out_w, l.out_b));
    std::vector<Tensor> ln2 = run_op("layer_norm_forward", {&a.h, &l.ln2_w, &l.ln2_b}, ln_attrs);
    a.ln2 = ln2[0], a.ln2_mean = ln2[1], a.ln2_rstd = ln2[2];
    a.fc1 = linear(a.ln2, l.fc1_w, l.fc1_b);
    a.act = run_op(act_op, {&a.fc1}).front();
    x = add(a.h, linear(a.act, l.fc2_w, l.fc2_b));
    acts.push_back(std::move(a));
  }
  return x;
}

Tensor ln_backward(const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& w,
                   size_t wi, WeightGrads& g) {
  return param_backward("layer_norm_backward", {&dy, &x, &mean, &rstd, &w}, wi, g);
}

Tensor linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, size_t wi, WeightGrads& g) {
  return param_backward("linear_backward", {&dy, &x, &w}, wi, g);
}

Tensor position_embedding_backward(const Tensor& dx, int64_t positions) {
  const int64_t B = dx.shape[0], T = dx.shape[1];
  std::vector<int64_t> pos(static_cast<size_t>(B * T));
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int64_t>(i) % T;
  Tensor pos_ids = ops::from_host(pos.data(), pos.size() * sizeof(int64_t), {B, T}, DType::I64, DType::I64);
  if (dx.device.type != DeviceType::CPU) pos_ids = run_now(ops::to_device(pos_ids, dx.device)).front();
  ops::Attrs a;
  a.numbers["vocab"] = static_cast<double>(positions);
  return run_op("embedding_backward", {&dx, &pos_ids}, a).front();
}

Tensor clip_layer_backward(const ClipEncoderOptions& o, const ClipLayerWeights& l, const ClipLayerActivations& a,
                           const Tensor& d_out, size_t b, WeightGrads& g) {
  const int64_t B = a.x.shape[0], T = a.x.shape[1], H = a.x.shape[2];
  const int64_t hd = H / o.heads;
  const char* act_op = o.quick_gelu ? "quick_gelu_backward" : "gelu_backward";
  // MLP: out = h + fc2(act(fc1(ln2(h))))
  Tensor d_act = linear_backward(d_out, a.act, l.fc2_w, b + 14, g);
  Tensor d_fc1 = run_op(act_op, {&d_act, &a.fc1}).front();
  Tensor d_ln2 = linear_backward(d_fc1, a.ln2, l.fc1_w, b + 12, g);
  Tensor dh = add(d_out, ln_backward(d_ln2, a.h, a.ln2_mean, a.ln2_rstd, l.ln2_w, b + 10, g));
  // Attention: h = x + out_proj(merge(attention(split(q, k, v of ln1(x)))))
  Tensor d_merged = linear_backward(dh, a.attn_merged, l.out_w, b + 8, g);
  Tensor d_o = swap_dims12(ops::reshape(d_merged, {B, T, o.heads, hd}));
  std::vector<Tensor> dqkv =
      run_op("attention_backward", {&d_o, &a.q, &a.k, &a.v, &a.attn_o, &a.attn_lse}, attention_attrs(o, hd));
  auto merge = [&](const Tensor& t) { return ops::reshape(swap_dims12(t), {B, T, H}); };
  Tensor d_ln1 = linear_backward(merge(dqkv[0]), a.ln1, l.q_w, b + 2, g);
  d_ln1 = add(d_ln1, linear_backward(merge(dqkv[1]), a.ln1, l.k_w, b + 4, g));
  d_ln1 = add(d_ln1, linear_backward(merge(dqkv[2]), a.ln1, l.v_w, b + 6, g));
  return add(dh, ln_backward(d_ln1, a.x, a.ln1_mean, a.ln1_rstd, l.ln1_w, b, g));
}

}  // namespace models
}  // namespace imprint
