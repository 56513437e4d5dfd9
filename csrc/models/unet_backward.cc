// The UNet backward (see unet_backward.h): each forward module of unet.cc
// has its mirror here, taking the output gradient and returning the input's.
#include "models/unet_backward.h"

#include <string>
#include <utility>
#include <vector>

#include "models/model_util.h"

namespace imprint {
namespace models {
namespace {

Tensor add(const Tensor& a, const Tensor& b) { return run_now(ops::binary(BinaryOp::Add, a, b)).front(); }

struct Ctx {
  const UNetConfig& c;
  const std::set<const void*>& trainable;
  UNetGrads& g;
  const Tensor& emb_act;  // silu(emb), every time projection's input
  bool time_chain;       // some time-embedding weight trains: the resnets' time projections pass gradients back
  Tensor d_emb_act;      // their sum, when time_chain
  bool detach_first_token;  // cross-attention K/V at context position 0 get no gradient
  bool train(const Tensor& t) const { return trainable.count(t.data()) != 0; }
  // A weight used twice (both paths of a dual-path attention) sums its gradients.
  void put(const Tensor& w, const Tensor& grad) {
    auto it = g.weights.find(w.data());
    if (it == g.weights.end()) g.weights.emplace(w.data(), grad);
    else it->second = run_now(ops::binary(BinaryOp::Add, it->second, grad)).front();
  }
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
  if (wg) k.put(w, r[i++]);
  if (bg) k.put(*b, r[i++]);
  return r[0];
}

// Input gradient of a "same"-padded conv; weight and bias gradients when trainable.
Tensor conv_bwd(Ctx& k, const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride = 1) {
  ops::Attrs a;
  const double p = static_cast<double>((w.shape[2] - 1) / 2);
  const bool wg = k.train(w), bg = k.train(b);
  a.numbers["stride"] = static_cast<double>(stride);
  a.lists["padding"] = {p, p, p, p};
  a.numbers["weightGrad"] = wg ? 1 : 0;
  a.numbers["biasGrad"] = bg ? 1 : 0;
  std::vector<Tensor> r = run_op("conv2d_backward", {&dy, &x, &w}, a);
  size_t i = 1;
  if (wg) k.put(w, r[i++]);
  if (bg) k.put(b, r[i++]);
  return r[0];
}

// Group or layer norm backward (op = "group_norm_backward" / "layer_norm_backward").
Tensor norm_bwd(Ctx& k, const char* op, const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                const Tensor& w, const Tensor& b, ops::Attrs a) {
  const bool wg = k.train(w), bg = k.train(b);
  a.numbers["weightGrad"] = wg ? 1 : 0;
  a.numbers["biasGrad"] = bg ? 1 : 0;
  std::vector<Tensor> r = run_op(op, {&dy, &x, &mean, &rstd, &w}, a);
  size_t i = 1;
  if (wg) k.put(w, r[i++]);
  if (bg) k.put(b, r[i++]);
  return r[0];
}

Tensor group_norm_bwd(Ctx& k, const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                      const Tensor& w, const Tensor& b, double eps) {
  ops::Attrs a;
  a.numbers["groups"] = static_cast<double>(k.c.groups);
  a.numbers["eps"] = eps;
  return norm_bwd(k, "group_norm_backward", dy, x, mean, rstd, w, b, a);
}

Tensor layer_norm_bwd(Ctx& k, const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                      const Tensor& w, const Tensor& b) {
  ops::Attrs a;
  a.numbers["eps"] = 1e-5;
  return norm_bwd(k, "layer_norm_backward", dy, x, mean, rstd, w, b, a);
}

// The time projection t = time_emb_proj(silu(emb)) was added to h per channel
// (broadcast over H, W and, for one timestep, over the batch): its gradient
// is d_h summed over those dims.
void time_projection_bwd(Ctx& k, const ResnetWeights& w, const Tensor& d_h) {
  const Tensor& e = k.emb_act;
  std::vector<int64_t> dims = {2, 3};
  if (e.shape[0] == 1 && d_h.shape[0] != 1) dims.insert(dims.begin(), 0);
  const Tensor d_t = ops::reshape(run_now(ops::sum(d_h, dims, false)).front(), {e.shape[0], d_h.shape[1]});
  const Tensor d_e = linear_bwd(k, d_t, e, w.temb_w, &w.temb_b);
  if (k.time_chain) k.d_emb_act = k.d_emb_act.data() ? add(k.d_emb_act, d_e) : d_e;
}

Tensor resnet_bwd(Ctx& k, const ResnetWeights& w, const ResnetActivations& a, const Tensor& dy) {
  const Tensor d_act2 = conv_bwd(k, dy, a.act2, w.conv2_w, w.conv2_b);
  const Tensor d_h = group_norm_bwd(k, silu_bwd(d_act2, a.norm2), a.h, a.norm2_mean, a.norm2_rstd, w.norm2_w, w.norm2_b, k.c.eps);
  if (k.time_chain || k.train(w.temb_w) || k.train(w.temb_b)) time_projection_bwd(k, w, d_h);
  const Tensor d_act1 = conv_bwd(k, d_h, a.act1, w.conv1_w, w.conv1_b);
  const Tensor dx = group_norm_bwd(k, silu_bwd(d_act1, a.norm1), a.x, a.norm1_mean, a.norm1_rstd, w.norm1_w, w.norm1_b, k.c.eps);
  return add(dx, w.has_shortcut ? conv_bwd(k, dy, a.x, w.shortcut_w, w.shortcut_b) : dy);
}

// Zeroes row 0 of every batch element of t [N, T, C] (a fresh tensor), in place:
// K/V there are treated as constants. All-zero bits are 0.0 in every float dtype.
void zero_first_row(const Tensor& t) {
  const size_t row = static_cast<size_t>(t.shape[2]) * dtype_size(t.dtype);
  const std::vector<char> zeros(row, 0);
  for (int64_t n = 0; n < t.shape[0]; ++n) {
    char* at = static_cast<char*>(t.data()) + static_cast<size_t>(n * t.shape[1]) * row;
    backend_for(t.device).copy_from_host(at, zeros.data(), row);
  }
}

// The backward of project() (unet.cc): a plain linear, or linear_lowrank with
// its down/up factors' gradients put under their own storage.
Tensor project_bwd(Ctx& k, const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor* b, const LowRank* lr,
                   const Tensor& u) {
  if (!lr) return linear_bwd(k, dy, x, w, b);
  ops::Attrs a;
  const bool wg = k.train(w), bg = b != nullptr && k.train(*b);
  a.numbers["scale"] = lr->scale;
  a.numbers["weightGrad"] = wg ? 1 : 0;
  a.numbers["biasGrad"] = bg ? 1 : 0;
  std::vector<Tensor> r = run_op("linear_lowrank_backward", {&dy, &x, &w, &lr->down, &lr->up, &u}, a);
  if (k.train(lr->down)) k.put(lr->down, r[1]);
  if (k.train(lr->up)) k.put(lr->up, r[2]);
  size_t i = 3;
  if (wg) k.put(w, r[i++]);
  if (bg) k.put(*b, r[i++]);
  return r[0];
}

// One path's backward: dy on its output; returns dx (the query side) and sets dkv.
// detach_first: the key/value of position 0 get no gradient (Custom Diffusion's
// start-of-text detachment), so neither to_k/to_v nor kv row 0 learn from it.
// focus: the probe (TokenFocus), whose mean map's gradient reaches q and k of
// the cross-attentions it read.
Tensor attention_path_bwd(Ctx& k, const AttentionWeights& w, int64_t heads, const Tensor& x, const Tensor& kv,
                          const AttentionActivations& a, const Tensor& dy, Tensor& dkv, bool detach_first,
                          const TokenFocus* focus = nullptr) {
  const int64_t N = x.shape[0], Tq = x.shape[1], C = w.q_w.shape[0], Tk = kv.shape[1];
  const int64_t hd = C / heads;
  const Tensor d_merged = project_bwd(k, dy, a.merged, w.out_w, &w.out_b, w.out_lr.get(), a.u_out);
  const Tensor d_o = swap_dims12(ops::reshape(d_merged, {N, Tq, heads, hd}));
  std::vector<Tensor> d = run_op("attention_backward", {&d_o, &a.q, &a.k, &a.v, &a.o, &a.lse});
  if (focus && focus->d_mean.data() && Tq == focus->queries) {
    ops::Attrs fa;
    fa.lists["tokens"] = focus->tokens;
    const Tensor d_layer = scaled(focus->d_mean, 1.0 / static_cast<double>(focus->layers));
    std::vector<Tensor> f = run_op("attention_token_map_backward", {&d_layer, &a.q, &a.k, &a.lse}, fa);
    d[0] = add(d[0], f[0]), d[1] = add(d[1], f[1]);
  }
  auto merge = [&](const Tensor& t, int64_t T) { return ops::reshape(swap_dims12(t), {N, T, C}); };
  const Tensor dx = project_bwd(k, merge(d[0], Tq), x, w.q_w, nullptr, w.q_lr.get(), a.u_q);
  const Tensor d_k = merge(d[1], Tk), d_v = merge(d[2], Tk);
  if (detach_first) zero_first_row(d_k), zero_first_row(d_v);
  dkv = add(project_bwd(k, d_k, kv, w.k_w, nullptr, w.k_lr.get(), a.u_k), project_bwd(k, d_v, kv, w.v_w, nullptr, w.v_lr.get(), a.u_v));
  return dx;
}

// The attention's backward, through both paths of a dual path (α·dy to the
// adapted one, (1 − α)·dy to the plain one). dkv is the gradient of this
// attention's own key/value input; a cross-attention's hard context gets none
// (it holds real tokens only).
Tensor attention_bwd(Ctx& k, const AttentionWeights& w, int64_t heads, const Tensor& x, const Tensor& kv,
                     const AttentionActivations& a, const Tensor& dy, Tensor& dkv, bool detach_first = false,
                     const TokenFocus* focus = nullptr) {
  if (!w.dual) return attention_path_bwd(k, w, heads, x, kv, a, dy, dkv, detach_first, focus);
  const DualPath& d = *w.dual;
  const bool self = !d.kv_hard.data();
  Tensor dkv_soft, dkv_hard;
  const Tensor dx_soft = attention_path_bwd(k, w, heads, x, kv, a, scaled(dy, d.alpha), dkv_soft, detach_first, focus);
  const Tensor dx_hard = attention_path_bwd(k, d.plain, heads, x, self ? kv : d.kv_hard, *a.hard, scaled(dy, 1 - d.alpha),
                                            dkv_hard, detach_first);
  dkv = self ? add(dkv_soft, dkv_hard) : dkv_soft;
  return add(dx_soft, dx_hard);
}

Tensor block_bwd(Ctx& k, const TransformerBlockWeights& w, int64_t heads, const TransformerBlockActivations& a,
                 const Tensor& context, const Tensor& dy) {
  const Tensor d_geglu = linear_bwd(k, dy, a.geglu, w.ff2_w, &w.ff2_b);
  const Tensor d_ff1 = run_op("geglu_backward", {&d_geglu, &a.ff1}).front();
  const Tensor d_ln3 = linear_bwd(k, d_ff1, a.ln3, w.ff1_w, &w.ff1_b);
  const Tensor d_h2 = add(dy, layer_norm_bwd(k, d_ln3, a.h2, a.ln3_mean, a.ln3_rstd, w.norm3_w, w.norm3_b));
  Tensor d_ctx;
  const Tensor d_ln2 = attention_bwd(k, w.attn2, heads, a.ln2, context, a.attn2, d_h2, d_ctx, k.detach_first_token,
                                     k.c.focus.get());
  k.g.d_context = k.g.d_context.data() ? add(k.g.d_context, d_ctx) : d_ctx;
  const Tensor d_h1 = add(d_h2, layer_norm_bwd(k, d_ln2, a.h1, a.ln2_mean, a.ln2_rstd, w.norm2_w, w.norm2_b));
  Tensor d_kv;
  const Tensor d_q = attention_bwd(k, w.attn1, heads, a.ln1, a.ln1, a.attn1, d_h1, d_kv);
  return add(d_h1, layer_norm_bwd(k, add(d_q, d_kv), a.x, a.ln1_mean, a.ln1_rstd, w.norm1_w, w.norm1_b));
}

Tensor transformer_bwd(Ctx& k, const TransformerWeights& w, const TransformerActivations& a, const Tensor& context,
                       const Tensor& dy) {
  const int64_t H = a.x.shape[2], W = a.x.shape[3];
  Tensor d_t = k.c.linear_projection ? linear_bwd(k, to_tokens(dy), a.tokens_out, w.proj_out_w, &w.proj_out_b)
                                     : to_tokens(conv_bwd(k, dy, from_tokens(a.tokens_out, H, W), w.proj_out_w, w.proj_out_b));
  for (size_t i = w.blocks.size(); i-- > 0;) d_t = block_bwd(k, w.blocks[i], w.heads, a.blocks[i], context, d_t);
  const Tensor d_norm = k.c.linear_projection ? from_tokens(linear_bwd(k, d_t, to_tokens(a.norm), w.proj_in_w, &w.proj_in_b), H, W)
                                              : conv_bwd(k, from_tokens(d_t, H, W), a.norm, w.proj_in_w, w.proj_in_b);
  return add(dy, group_norm_bwd(k, d_norm, a.x, a.norm_mean, a.norm_rstd, w.norm_w, w.norm_b, 1e-6));
}

// Walks the kept activations from the end, as the backward consumes them in reverse.
struct Cursor {
  size_t resnet, transformer, resample, concat, layer;
};

Tensor layer_bwd(Ctx& k, const ResnetWeights& r, const TransformerWeights* t, const UNetActivations& acts,
                 const Tensor& context, Cursor& cur, Tensor dy) {
  if (acts.checkpointed) {
    // Rerun this layer's forward from its kept input (same kernels, so the
    // same activations), take its backward, and let the activations go.
    ResnetActivations ra;
    TransformerActivations ta;
    unet_layer(k.c, r, t, acts.layer_in[--cur.layer], k.emb_act, context, &ra, t ? &ta : nullptr);
    if (t) {
      dy = transformer_bwd(k, *t, ta, context, dy);
      ta = TransformerActivations();  // freed before the resnet's backward
    }
    return resnet_bwd(k, r, ra, dy);
  }
  if (t) dy = transformer_bwd(k, *t, acts.transformers[--cur.transformer], context, dy);
  return resnet_bwd(k, r, acts.resnets[--cur.resnet], dy);
}

}  // namespace

// Whether any weight of the time-embedding MLP trains (then every resnet's
// time projection must pass its gradient back to silu(emb)).
bool time_chain_trains(const UNetWeights& w, const std::set<const void*>& trainable) {
  for (const Tensor* t : {&w.time1_w, &w.time1_b, &w.time2_w, &w.time2_b}) {
    if (trainable.count(t->data())) return true;
  }
  return false;
}

UNetGrads unet_backward(const UNetConfig& c, const UNetWeights& w, const UNetActivations& acts, const Tensor& sample,
                        const Tensor& context, const Tensor& dy, const std::set<const void*>& trainable,
                        bool detach_first_token) {
  UNetGrads g;
  Ctx k{c, trainable, g, acts.emb_act, time_chain_trains(w, trainable), Tensor(), detach_first_token};
  Cursor cur{acts.resnets.size(), acts.transformers.size(), acts.resample_in.size(), acts.concat_in.size(),
             acts.layer_in.size()};

  Tensor dx = conv_bwd(k, dy, acts.act_out, w.conv_out_w, w.conv_out_b);
  dx = group_norm_bwd(k, silu_bwd(dx, acts.norm_out), acts.norm_out_in, acts.norm_out_mean, acts.norm_out_rstd,
                      w.norm_out_w, w.norm_out_b, c.eps);
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
      const Tensor d_up = conv_bwd(k, dx, up, b.resample_w, b.resample_b);
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
      dx = conv_bwd(k, dx, acts.resample_in[--cur.resample], b.resample_w, b.resample_b, 2);
    }
    for (size_t j = b.resnets.size(); j-- > 0;) {
      dx = add(dx, d_skip[--s]);
      dx = layer_bwd(k, b.resnets[j], b.attentions.empty() ? nullptr : &b.attentions[j], acts, context, cur, dx);
    }
  }
  dx = add(dx, d_skip[--s]);  // conv_in's output was skip 0
  g.d_sample = conv_bwd(k, dx, sample, w.conv_in_w, w.conv_in_b);

  // The time-embedding MLP: emb_act = silu(linear_2(silu(linear_1(t_proj)))).
  if (k.d_emb_act.data()) {
    const Tensor d_emb = silu_bwd(k.d_emb_act, acts.emb);
    const Tensor d_time_act = linear_bwd(k, d_emb, acts.time_act, w.time2_w, &w.time2_b);
    linear_bwd(k, silu_bwd(d_time_act, acts.time1), acts.t_proj, w.time1_w, &w.time1_b);
  }
  return g;
}

}  // namespace models
}  // namespace imprint
