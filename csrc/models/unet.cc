// The UNet2DConditionModel forward graph (see unet.h). Each module is a
// function of its own with explicit inputs and outputs.
#include "models/unet.h"

#include <cmath>
#include <utility>

#include "core/args/conv.h"
#include "models/model_util.h"

namespace imprint {
namespace models {
namespace {

Tensor add(const Tensor& a, const Tensor& b) { return run_now(ops::binary(BinaryOp::Add, a, b)).front(); }

Tensor silu(const Tensor& x) { return run_op("silu_forward", {&x}).front(); }

Tensor linear(const Tensor& x, const Tensor& w, const Tensor* b) {
  if (b) return run_op("linear_forward", {&x, &w, b}).front();
  return run_op("linear_forward", {&x, &w}).front();
}

Tensor conv(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride = 1) {
  ops::Attrs a;
  const double p = static_cast<double>((w.shape[2] - 1) / 2);  // "same" padding for odd kernels
  a.numbers["stride"] = static_cast<double>(stride);
  a.lists["padding"] = {p, p, p, p};
  return run_op("conv2d_forward", {&x, &w, &b}, a).front();
}

// y, mean, rstd
std::vector<Tensor> group_norm(const Tensor& x, const Tensor& w, const Tensor& b, int64_t groups, double eps) {
  ops::Attrs a;
  a.numbers["groups"] = static_cast<double>(groups);
  a.numbers["eps"] = eps;
  return run_op("group_norm_forward", {&x, &w, &b}, a);
}

// GroupNorm then SiLU in one kernel pass. The norm's output y (what SiLU's
// backward reads) is made only when a training pass keeps it.
struct NormSilu {
  Tensor act, y, mean, rstd;
};

NormSilu group_norm_silu(const Tensor& x, const Tensor& w, const Tensor& b, int64_t groups, double eps, bool keep_norm) {
  ops::Attrs a;
  a.numbers["groups"] = static_cast<double>(groups);
  a.numbers["eps"] = eps;
  a.numbers["keepNorm"] = keep_norm ? 1 : 0;
  std::vector<Tensor> r = run_op("group_norm_silu_forward", {&x, &w, &b}, a);
  if (keep_norm) return {std::move(r[0]), std::move(r[1]), std::move(r[2]), std::move(r[3])};
  return {std::move(r[0]), Tensor(), std::move(r[1]), std::move(r[2])};
}

std::vector<Tensor> layer_norm(const Tensor& x, const Tensor& w, const Tensor& b) {
  ops::Attrs a;
  a.numbers["eps"] = 1e-5;  // BasicTransformerBlock's LayerNorm default
  return run_op("layer_norm_forward", {&x, &w, &b}, a);
}


// Each module below keeps its intermediates in *keep when given (training).
// Otherwise (inference) they sit in a local, each dropped by `release` once
// its last consumer has run, and the rest go when the module returns.
void release(const void* keep, Tensor& t) {
  if (!keep) t = Tensor();
}

Tensor resnet(const UNetConfig& c, const ResnetWeights& w, const Tensor& x, const Tensor& emb_act,
              ResnetActivations* keep) {
  ResnetActivations local;
  ResnetActivations& a = keep ? *keep : local;
  a.x = x;
  NormSilu n1 = group_norm_silu(x, w.norm1_w, w.norm1_b, c.groups, c.eps, keep != nullptr);
  a.act1 = std::move(n1.act), a.norm1 = std::move(n1.y), a.norm1_mean = std::move(n1.mean), a.norm1_rstd = std::move(n1.rstd);
  // The time projection is [N or 1, Cout]: added per channel, broadcast over H, W.
  const Tensor t = linear(emb_act, w.temb_w, &w.temb_b);
  a.h = add(conv(a.act1, w.conv1_w, w.conv1_b), ops::reshape(t, {t.shape[0], t.shape[1], 1, 1}));
  release(keep, a.act1);
  NormSilu n2 = group_norm_silu(a.h, w.norm2_w, w.norm2_b, c.groups, c.eps, keep != nullptr);
  release(keep, a.h);
  a.act2 = std::move(n2.act), a.norm2 = std::move(n2.y), a.norm2_mean = std::move(n2.mean), a.norm2_rstd = std::move(n2.rstd);
  Tensor h = conv(a.act2, w.conv2_w, w.conv2_b);
  release(keep, a.act2);
  return add(w.has_shortcut ? conv(x, w.shortcut_w, w.shortcut_b) : x, h);  // output_scale_factor 1
}

// A projection: x·Wᵀ (+ b), plus s·(x·downᵀ)·upᵀ per batch element when it
// carries a per-sample low-rank update (u = x·downᵀ kept for the backward).
Tensor project(const Tensor& x, const Tensor& w, const Tensor* b, const LowRank* lr, Tensor* u, const void* keep) {
  if (!lr) return linear(x, w, b);
  ops::Attrs a;
  a.numbers["scale"] = lr->scale;
  ops::OpInputs in = {&x, &w, &lr->down, &lr->up};
  if (b) in.push_back(b);
  std::vector<Tensor> r = run_op("linear_lowrank_forward", in, a);
  *u = std::move(r[1]);
  release(keep, *u);
  return r[0];
}

// The probe's token maps of one cross-attention, added to its sum (see TokenFocus).
void collect_focus(TokenFocus* focus, const Tensor& q, const Tensor& k, const Tensor& lse) {
  if (!focus || !focus->collect || q.shape[2] != focus->queries) return;
  ops::Attrs a;
  a.lists["tokens"] = focus->tokens;
  Tensor maps = run_op("attention_token_map_forward", {&q, &k, &lse}, a).front();
  focus->sum = focus->sum.data() ? add(focus->sum, maps) : maps;
  ++focus->layers;
}

// diffusers' Attention with heads·head_dim = C: q from x, k and v from kv (one
// path); `focus`: the probe, for the cross-attention's main path.
Tensor attention_path(const AttentionWeights& w, int64_t heads, const Tensor& x, const Tensor& kv,
                      AttentionActivations* keep, TokenFocus* focus = nullptr) {
  AttentionActivations local;
  AttentionActivations& a = keep ? *keep : local;
  const int64_t N = x.shape[0], Tq = x.shape[1], C = w.q_w.shape[0], Tk = kv.shape[1];
  const int64_t hd = C / heads;
  auto split = [&](const Tensor& t, int64_t T) { return swap_dims12(ops::reshape(t, {N, T, heads, hd})); };
  a.q = split(project(x, w.q_w, nullptr, w.q_lr.get(), &a.u_q, keep), Tq);
  a.k = split(project(kv, w.k_w, nullptr, w.k_lr.get(), &a.u_k, keep), Tk);
  a.v = split(project(kv, w.v_w, nullptr, w.v_lr.get(), &a.u_v, keep), Tk);
  std::vector<Tensor> o = run_op("attention_forward", {&a.q, &a.k, &a.v});  // scale 1/√hd
  collect_focus(focus, a.q, a.k, o[1]);
  for (Tensor* t : {&a.q, &a.k, &a.v}) release(keep, *t);
  a.o = std::move(o[0]), a.lse = std::move(o[1]);
  a.merged = ops::reshape(swap_dims12(a.o), {N, Tq, C});
  release(keep, a.o);
  return project(a.merged, w.out_w, &w.out_b, w.out_lr.get(), &a.u_out, keep);
}

// The attention, on both paths when it has a dual path: α·adapted + (1 − α)·plain.
Tensor attention(const AttentionWeights& w, int64_t heads, const Tensor& x, const Tensor& kv,
                 AttentionActivations* keep, TokenFocus* focus = nullptr) {
  if (!w.dual) return attention_path(w, heads, x, kv, keep, focus);
  const DualPath& d = *w.dual;
  std::shared_ptr<AttentionActivations> hard = keep ? std::make_shared<AttentionActivations>() : nullptr;
  const Tensor soft = attention_path(w, heads, x, kv, keep, focus);
  const Tensor plain = attention_path(d.plain, heads, x, d.kv_hard.data() ? d.kv_hard : kv, hard.get());
  if (keep) keep->hard = hard;
  return add(scaled(soft, d.alpha), scaled(plain, 1 - d.alpha));
}

Tensor transformer_block(const TransformerBlockWeights& w, int64_t heads, const Tensor& x, const Tensor& context,
                         TransformerBlockActivations* keep, TokenFocus* focus) {
  TransformerBlockActivations local;
  TransformerBlockActivations& a = keep ? *keep : local;
  a.x = x;
  std::vector<Tensor> l1 = layer_norm(x, w.norm1_w, w.norm1_b);
  a.ln1 = std::move(l1[0]), a.ln1_mean = std::move(l1[1]), a.ln1_rstd = std::move(l1[2]);
  a.h1 = add(attention(w.attn1, heads, a.ln1, a.ln1, keep ? &a.attn1 : nullptr), x);
  release(keep, a.ln1);
  std::vector<Tensor> l2 = layer_norm(a.h1, w.norm2_w, w.norm2_b);
  a.ln2 = std::move(l2[0]), a.ln2_mean = std::move(l2[1]), a.ln2_rstd = std::move(l2[2]);
  a.h2 = add(attention(w.attn2, heads, a.ln2, context, keep ? &a.attn2 : nullptr, focus), a.h1);
  release(keep, a.ln2);
  release(keep, a.h1);
  std::vector<Tensor> l3 = layer_norm(a.h2, w.norm3_w, w.norm3_b);
  a.ln3 = std::move(l3[0]), a.ln3_mean = std::move(l3[1]), a.ln3_rstd = std::move(l3[2]);
  a.ff1 = linear(a.ln3, w.ff1_w, &w.ff1_b);
  release(keep, a.ln3);
  a.geglu = run_op("geglu_forward", {&a.ff1}).front();
  release(keep, a.ff1);
  return add(linear(a.geglu, w.ff2_w, &w.ff2_b), a.h2);
}

Tensor transformer(const UNetConfig& c, const TransformerWeights& w, const Tensor& x, const Tensor& context,
                   TransformerActivations* keep) {
  TransformerActivations local;
  TransformerActivations& a = keep ? *keep : local;
  a.x = x;
  const int64_t H = x.shape[2], W = x.shape[3];
  std::vector<Tensor> n = group_norm(x, w.norm_w, w.norm_b, c.groups, 1e-6);
  a.norm = std::move(n[0]), a.norm_mean = std::move(n[1]), a.norm_rstd = std::move(n[2]);
  a.tokens_in = c.linear_projection ? linear(to_tokens(a.norm), w.proj_in_w, &w.proj_in_b)
                                    : to_tokens(conv(a.norm, w.proj_in_w, w.proj_in_b));
  release(keep, a.norm);
  Tensor t = a.tokens_in;
  release(keep, a.tokens_in);
  for (const TransformerBlockWeights& b : w.blocks) {
    TransformerBlockActivations* kb = nullptr;
    if (keep) {
      a.blocks.emplace_back();
      kb = &a.blocks.back();
    }
    t = transformer_block(b, w.heads, t, context, kb, c.focus.get());
  }
  a.tokens_out = t;
  const Tensor h = c.linear_projection ? from_tokens(linear(t, w.proj_out_w, &w.proj_out_b), H, W)
                                       : conv(from_tokens(t, H, W), w.proj_out_w, w.proj_out_b);
  return add(h, x);
}

Tensor downsample(const Tensor& x, const Tensor& w, const Tensor& b) { return conv(x, w, b, 2); }

// Nearest resize to the pending skip's size (2x, or less after an odd-sized downsample), then conv.
Tensor upsample(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& skip) {
  ops::Attrs ua;
  ua.numbers["outH"] = static_cast<double>(skip.shape[2]);
  ua.numbers["outW"] = static_cast<double>(skip.shape[3]);
  return conv(run_op("upsample_nearest_forward", {&x}, ua).front(), w, b);
}

// One layer inside the forward: kept whole (training), only its input
// (checkpointed training) or not at all (acts == nullptr, inference).
Tensor layer(const UNetConfig& c, const ResnetWeights& r, const TransformerWeights* t, const Tensor& x,
             const Tensor& emb_act, const Tensor& context, UNetActivations* acts) {
  if (!acts) return unet_layer(c, r, t, x, emb_act, context, nullptr, nullptr);
  if (acts->checkpointed) {
    acts->layer_in.push_back(x);
    return unet_layer(c, r, t, x, emb_act, context, nullptr, nullptr);
  }
  acts->resnets.emplace_back();
  TransformerActivations* ta = nullptr;
  if (t) {
    acts->transformers.emplace_back();
    ta = &acts->transformers.back();
  }
  return unet_layer(c, r, t, x, emb_act, context, &acts->resnets.back(), ta);
}

}  // namespace

Tensor unet_layer(const UNetConfig& c, const ResnetWeights& r, const TransformerWeights* t, const Tensor& x,
                  const Tensor& emb_act, const Tensor& context, ResnetActivations* ra, TransformerActivations* ta) {
  const Tensor y = resnet(c, r, x, emb_act, ra);
  return t ? transformer(c, *t, y, context, ta) : y;
}

void unet_forward(const UNetConfig& c, const UNetWeights& w, const Tensor& sample, const Tensor& timestep,
                  const Tensor& context, Tensor& out, UNetActivations* keep) {
  // Inference keeps the (small) time-embedding chain and the output tail in a
  // local; the per-layer activations are never stored.
  UNetActivations local;
  UNetActivations& acts = keep ? *keep : local;
  ops::Attrs ta;
  ta.numbers["dim"] = static_cast<double>(w.time1_w.shape[1]);
  ta.numbers["flipSinToCos"] = c.flip_sin_to_cos ? 1 : 0;
  ta.numbers["freqShift"] = c.freq_shift;
  const Tensor t = timestep.ndim() == 0 ? ops::reshape(timestep, {1}) : timestep;
  acts.t_proj = run_op("timestep_embedding_forward", {&t}, ta).front();
  acts.time1 = linear(acts.t_proj, w.time1_w, &w.time1_b);
  acts.time_act = silu(acts.time1);
  acts.emb = linear(acts.time_act, w.time2_w, &w.time2_b);
  acts.emb_act = silu(acts.emb);  // every resnet applies SiLU before its time_emb_proj

  Tensor x = conv(sample, w.conv_in_w, w.conv_in_b);
  if (keep) acts.conv_in = x;
  std::vector<Tensor> skips = {x};
  for (const UNetBlockWeights& b : w.down) {
    for (size_t j = 0; j < b.resnets.size(); ++j) {
      x = layer(c, b.resnets[j], b.attentions.empty() ? nullptr : &b.attentions[j], x, acts.emb_act, context, keep);
      skips.push_back(x);
    }
    if (b.has_resample) {
      if (keep) acts.resample_in.push_back(x);
      x = downsample(x, b.resample_w, b.resample_b);
      skips.push_back(x);
    }
    if (c.features) c.features->push_back(x);
  }
  x = layer(c, w.mid_res0, &w.mid_attn, x, acts.emb_act, context, keep);
  x = layer(c, w.mid_res1, nullptr, x, acts.emb_act, context, keep);
  if (c.features) c.features->push_back(x);
  for (const UNetBlockWeights& b : w.up) {
    for (size_t j = 0; j < b.resnets.size(); ++j) {
      const Tensor skip = skips.back();
      skips.pop_back();
      if (keep) {
        acts.concat_in.push_back(x);
        acts.concat_in.push_back(skip);
      }
      ops::Attrs ca;
      ca.numbers["dim"] = 1;
      const Tensor cat = run_op("concat_forward", {&x, &skip}, ca).front();
      x = layer(c, b.resnets[j], b.attentions.empty() ? nullptr : &b.attentions[j], cat, acts.emb_act, context, keep);
    }
    if (b.has_resample) {
      if (keep) acts.resample_in.push_back(x);
      x = upsample(x, b.resample_w, b.resample_b, skips.back());
    }
  }
  acts.norm_out_in = x;
  NormSilu n = group_norm_silu(x, w.norm_out_w, w.norm_out_b, c.groups, c.eps, keep != nullptr);
  acts.act_out = std::move(n.act), acts.norm_out = std::move(n.y), acts.norm_out_mean = std::move(n.mean),
  acts.norm_out_rstd = std::move(n.rstd);

  // conv_out straight into the op's preallocated output.
  const Tensor& xo = acts.act_out;
  Conv2dGeometry g{};
  g.n = xo.shape[0], g.cin = xo.shape[1], g.h = xo.shape[2], g.w = xo.shape[3];
  g.cout = w.conv_out_w.shape[0], g.kh = w.conv_out_w.shape[2], g.kw = w.conv_out_w.shape[3];
  g.stride = 1;
  g.pad_top = g.pad_bottom = (g.kh - 1) / 2;
  g.pad_left = g.pad_right = (g.kw - 1) / 2;
  g.ho = g.h, g.wo = g.w;
  Conv2dForwardArgs args{xo.dtype, xo.data(), w.conv_out_w.data(), w.conv_out_b.data(), out.data(), g};
  find_kernel("conv2d_forward", xo.device)(&args);
  backend_for(xo.device).synchronize();
}

}  // namespace models
}  // namespace imprint
