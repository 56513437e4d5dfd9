// The UNet backward (see unet_backward.h): each forward module of unet.cc
// has its mirror here, taking the output gradient and returning the input's.
#include "models/unet_backward.h"

#include <string>
#include <utility>

#include "models/model_util.h"

namespace imprint {
namespace models {
namespace {

Tensor add(const Tensor& a, const Tensor& b) { return run_now(ops::binary(BinaryOp::Add, a, b)).front(); }

struct Ctx {
  const UNetConfig& c;
  const std::set<const void*>& trainable;
  UNetGrads& g;
  bool train(const Tensor& t) const { return trainable.count(t.data()) != 0; }
};

Tensor silu_bwd(const Tensor& dy, const Tensor& x) { return run_op("silu_backward", {&dy, &x}).front(); }

// Input gradient of a linear; the weight (and bias) gradient only when trainable.
Tensor linear_bwd(Ctx& k, const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor* b = nullptr) {
  ops::Attrs a;
  const bool wg = k.train(w), bg = b != nullptr && k.train(*b);
  a.numbers["weightGrad"] = wg ? 1 : 0;
  a.numbers["biasGrad"] = bg ? 1 : 0;
  std::vector<Tensor> r = run_op("linear_backward", {&dy, &x, &w}, a);
  size_t i = 1;
  if (wg) k.g.weights[w.data()] = r[i++];
  if (bg) k.g.weights[b->data()] = r[i++];
  return r[0];
}

// Convs are all frozen: only the input gradient.
Tensor conv_bwd(const Tensor& dy, const Tensor& x, const Tensor& w, int64_t stride = 1) {
  ops::Attrs a;
  const double p = static_cast<double>((w.shape[2] - 1) / 2);
  a.numbers["stride"] = static_cast<double>(stride);
  a.lists["padding"] = {p, p, p, p};
  a.numbers["weightGrad"] = 0;
  return run_op("conv2d_backward", {&dy, &x, &w}, a).front();
}

Tensor group_norm_bwd(const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& w,
                      int64_t groups, double eps) {
  ops::Attrs a;
  a.numbers["groups"] = static_cast<double>(groups);
  a.numbers["eps"] = eps;
  a.numbers["weightGrad"] = 0;
  a.numbers["biasGrad"] = 0;
  return run_op("group_norm_backward", {&dy, &x, &mean, &rstd, &w}, a).front();
}

Tensor layer_norm_bwd(const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& w) {
  ops::Attrs a;
  a.numbers["eps"] = 1e-5;
  a.numbers["weightGrad"] = 0;
  a.numbers["biasGrad"] = 0;
  return run_op("layer_norm_backward", {&dy, &x, &mean, &rstd, &w}, a).front();
}


Tensor resnet_bwd(Ctx& k, const ResnetWeights& w, const ResnetActivations& a, const Tensor& dy) {
  // The time projection's gradient is not needed: the time embedding is frozen and t has no gradient.
  const Tensor d_act2 = conv_bwd(dy, a.act2, w.conv2_w);
  const Tensor d_h = group_norm_bwd(silu_bwd(d_act2, a.norm2), a.h, a.norm2_mean, a.norm2_rstd, w.norm2_w, k.c.groups, k.c.eps);
  const Tensor d_act1 = conv_bwd(d_h, a.act1, w.conv1_w);
  const Tensor dx = group_norm_bwd(silu_bwd(d_act1, a.norm1), a.x, a.norm1_mean, a.norm1_rstd, w.norm1_w, k.c.groups, k.c.eps);
  return add(dx, w.has_shortcut ? conv_bwd(dy, a.x, w.shortcut_w) : dy);
}

// dy on the attention's output; returns dx (the query side) and sets dkv.
Tensor attention_bwd(Ctx& k, const AttentionWeights& w, int64_t heads, const Tensor& x, const Tensor& kv,
                     const AttentionActivations& a, const Tensor& dy, Tensor& dkv) {
  const int64_t N = x.shape[0], Tq = x.shape[1], C = w.q_w.shape[0], Tk = kv.shape[1];
  const int64_t hd = C / heads;
  const Tensor d_merged = linear_bwd(k, dy, a.merged, w.out_w, &w.out_b);
  const Tensor d_o = swap_dims12(ops::reshape(d_merged, {N, Tq, heads, hd}));
  std::vector<Tensor> d = run_op("attention_backward", {&d_o, &a.q, &a.k, &a.v, &a.o, &a.lse});
  auto merge = [&](const Tensor& t, int64_t T) { return ops::reshape(swap_dims12(t), {N, T, C}); };
  const Tensor dx = linear_bwd(k, merge(d[0], Tq), x, w.q_w);
  dkv = add(linear_bwd(k, merge(d[1], Tk), kv, w.k_w), linear_bwd(k, merge(d[2], Tk), kv, w.v_w));
  return dx;
}

Tensor block_bwd(Ctx& k, const TransformerBlockWeights& w, int64_t heads, const TransformerBlockActivations& a,
                 const Tensor& context, const Tensor& dy) {
  const Tensor d_geglu = linear_bwd(k, dy, a.geglu, w.ff2_w);
  const Tensor d_ff1 = run_op("geglu_backward", {&d_geglu, &a.ff1}).front();
  const Tensor d_ln3 = linear_bwd(k, d_ff1, a.ln3, w.ff1_w);
  const Tensor d_h2 = add(dy, layer_norm_bwd(d_ln3, a.h2, a.ln3_mean, a.ln3_rstd, w.norm3_w));
  Tensor d_ctx;
  const Tensor d_ln2 = attention_bwd(k, w.attn2, heads, a.ln2, context, a.attn2, d_h2, d_ctx);
  k.g.d_context = k.g.d_context.data() ? add(k.g.d_context, d_ctx) : d_ctx;
  const Tensor d_h1 = add(d_h2, layer_norm_bwd(d_ln2, a.h1, a.ln2_mean, a.ln2_rstd, w.norm2_w));
  Tensor d_kv;
  const Tensor d_q = attention_bwd(k, w.attn1, heads, a.ln1, a.ln1, a.attn1, d_h1, d_kv);
  return add(d_h1, layer_norm_bwd(add(d_q, d_kv), a.x, a.ln1_mean, a.ln1_rstd, w.norm1_w));
}

Tensor transformer_bwd(Ctx& k, const TransformerWeights& w, const TransformerActivations& a, const Tensor& context,
                       const Tensor& dy) {
  const int64_t H = a.x.shape[2], W = a.x.shape[3];
  Tensor d_t = k.c.linear_projection ? linear_bwd(k, to_tokens(dy), a.tokens_out, w.proj_out_w)
                                     : to_tokens(conv_bwd(dy, from_tokens(a.tokens_out, H, W), w.proj_out_w));
  for (size_t i = w.blocks.size(); i-- > 0;) d_t = block_bwd(k, w.blocks[i], w.heads, a.blocks[i], context, d_t);
  const Tensor d_norm = k.c.linear_projection ? from_tokens(linear_bwd(k, d_t, to_tokens(a.norm), w.proj_in_w), H, W)
                                              : conv_bwd(from_tokens(d_t, H, W), a.norm, w.proj_in_w);
  return add(dy, group_norm_bwd(d_norm, a.x, a.norm_mean, a.norm_rstd, w.norm_w, k.c.groups, 1e-6));
}

// Walks the kept activations from the end, as the backward consumes them in reverse.
struct Cursor {
  size_t resnet, transformer, resample, concat;
};

Tensor layer_bwd(Ctx& k, const ResnetWeights& r, const TransformerWeights* t, const UNetActivations& acts,
                 const Tensor& context, Cursor& cur, Tensor dy) {
  if (t) dy = transformer_bwd(k, *t, acts.transformers[--cur.transformer], context, dy);
  return resnet_bwd(k, r, acts.resnets[--cur.resnet], dy);
}

}  // namespace

UNetGrads unet_backward(const UNetConfig& c, const UNetWeights& w, const UNetActivations& acts, const Tensor& sample,
                        const Tensor& context, const Tensor& dy, const std::set<const void*>& trainable) {
  UNetGrads g;
  Ctx k{c, trainable, g};
  Cursor cur{acts.resnets.size(), acts.transformers.size(), acts.resample_in.size(), acts.concat_in.size()};

  Tensor dx = conv_bwd(dy, acts.act_out, w.conv_out_w);
  dx = group_norm_bwd(silu_bwd(dx, acts.norm_out), acts.norm_out_in, acts.norm_out_mean, acts.norm_out_rstd,
                      w.norm_out_w, c.groups, c.eps);

  // Up path, reversed. The k-th concat (forward order) took skip S-1-k.
  const size_t S = acts.concat_in.size() / 2;
  std::vector<Tensor> d_skip(S);
  for (size_t i = w.up.size(); i-- > 0;) {
    const UNetBlockWeights& b = w.up[i];
    if (b.has_resample) {
      const Tensor& in = acts.resample_in[--cur.resample];
      ops::Attrs ua, da;  // resized to dx's size (the skip's), back to in's
      ua.numbers["outH"] = static_cast<double>(dx.shape[2]), ua.numbers["outW"] = static_cast<double>(dx.shape[3]);
      da.numbers["inH"] = static_cast<double>(in.shape[2]), da.numbers["inW"] = static_cast<double>(in.shape[3]);
      const Tensor up = run_op("upsample_nearest_forward", {&in}, ua).front();  // conv input, recomputed
      const Tensor d_up = conv_bwd(dx, up, b.resample_w);
      dx = run_op("upsample_nearest_backward", {&d_up}, da).front();
    }
    for (size_t j = b.resnets.size(); j-- > 0;) {
      const Tensor d_cat = layer_bwd(k, b.resnets[j], b.attentions.empty() ? nullptr : &b.attentions[j], acts, context, cur, dx);
      cur.concat -= 2;
      const Tensor& xin = acts.concat_in[cur.concat];
      const Tensor& skip = acts.concat_in[cur.concat + 1];
      ops::Attrs sa;
      sa.numbers["dim"] = 1;
      sa.lists["sizes"] = {static_cast<double>(xin.shape[1]), static_cast<double>(skip.shape[1])};
      std::vector<Tensor> parts = run_op("split_forward", {&d_cat}, sa);
      dx = parts[0];
      d_skip[S - 1 - cur.concat / 2] = parts[1];
    }
  }
  dx = layer_bwd(k, w.mid_res1, nullptr, acts, context, cur, dx);
  dx = layer_bwd(k, w.mid_res0, &w.mid_attn, acts, context, cur, dx);

  // Down path, reversed: every pushed skip adds its gradient to its producer's output.
  size_t s = S;
  for (size_t i = w.down.size(); i-- > 0;) {
    const UNetBlockWeights& b = w.down[i];
    if (b.has_resample) {
      dx = add(dx, d_skip[--s]);
      dx = conv_bwd(dx, acts.resample_in[--cur.resample], b.resample_w, 2);
    }
    for (size_t j = b.resnets.size(); j-- > 0;) {
      dx = add(dx, d_skip[--s]);
      dx = layer_bwd(k, b.resnets[j], b.attentions.empty() ? nullptr : &b.attentions[j], acts, context, cur, dx);
    }
  }
  dx = add(dx, d_skip[--s]);  // conv_in's output was skip 0
  g.d_sample = conv_bwd(dx, sample, w.conv_in_w);
  return g;
}

}  // namespace models
}  // namespace imprint
