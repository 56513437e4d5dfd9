// Materialising adapted attention weights and mapping their gradients back
// (see unet_adapters.h), with the registered ops so any device works.
#include "models/unet_adapters.h"

#include "models/model_util.h"

namespace imprint {
namespace models {
namespace {

Tensor add(const Tensor& a, const Tensor& b) { return run_now(ops::binary(BinaryOp::Add, a, b)).front(); }
Tensor mul(const Tensor& a, const Tensor& b) { return run_now(ops::binary(BinaryOp::Mul, a, b)).front(); }

Tensor scale(const Tensor& x, double s) {
  ops::Attrs a;
  a.numbers["factor"] = s;
  return run_op("scale_forward", {&x}, a).front();
}

// 1 - m in `like`'s dtype: exactly 1 where open, 0 where shut.
Tensor keep(const Tensor& mask, const Tensor& like) {
  const Tensor m = run_now(ops::cast(mask, like.dtype)).front();
  const Tensor one = run_now(ops::full(m.shape, like.dtype, like.device, 1.0)).front();
  return add(one, scale(m, -1.0));
}

}  // namespace

Tensor adapted_weight(const Tensor& w, const AttentionAdapter& a) {
  Tensor eff = w;
  if (a.has_delta()) eff = add(eff, a.delta);
  if (a.has_lora()) eff = add(eff, scale(run_now(ops::matmul(a.lora_b, a.lora_a, false, false)).front(), a.scale));
  if (a.has_mask()) eff = mul(eff, keep(a.mask, w));
  return eff;
}

Tensor masked_gradient(const Tensor& d_eff, const AttentionAdapter& a) {
  return a.has_mask() ? mul(d_eff, keep(a.mask, d_eff)) : d_eff;
}

Tensor lora_a_gradient(const Tensor& d, const AttentionAdapter& a) {
  return scale(run_now(ops::matmul(a.lora_b, d, true, false)).front(), a.scale);
}

Tensor lora_b_gradient(const Tensor& d, const AttentionAdapter& a) {
  return scale(run_now(ops::matmul(d, a.lora_a, false, true)).front(), a.scale);
}

void replace_projections(UNetWeights& w, const std::map<const void*, Tensor>& replacements) {
  auto swap_in = [&](Tensor& t) {
    auto it = replacements.find(t.data());
    if (it != replacements.end()) t = it->second;
  };
  auto transformer = [&](TransformerWeights& t) {
    for (TransformerBlockWeights& b : t.blocks) {
      for (AttentionWeights* at : {&b.attn1, &b.attn2}) {
        for (Tensor* p : {&at->q_w, &at->k_w, &at->v_w, &at->out_w}) swap_in(*p);
      }
    }
  };
  for (UNetBlockWeights& b : w.down) {
    for (TransformerWeights& t : b.attentions) transformer(t);
  }
  transformer(w.mid_attn);
  for (UNetBlockWeights& b : w.up) {
    for (TransformerWeights& t : b.attentions) transformer(t);
  }
}

}  // namespace models
}  // namespace imprint
