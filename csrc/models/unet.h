// diffusers' UNet2DConditionModel (0.21, SD 1.x/2.x configs) as an explicit
// forward graph over the registered kernels:
//   emb = linear_2(silu(linear_1(timestep_embedding(t))))
//   x = conv_in(sample); skips = [x]
//   down blocks: per layer resnet(x, emb) [→ transformer(x, context)], push x;
//                then (not the last) a stride-2 conv, push x
//   mid: resnet → transformer → resnet
//   up blocks: per layer x = concat(x, skips.pop()) on channels → resnet
//              [→ transformer]; then (not the last) nearest 2x + conv
//   out = conv_out(silu(conv_norm_out(x)))
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace imprint {
namespace models {

// Attend-and-Excite's probe (DESIGN.md §1.2, several subjects): every
// cross-attention with `queries` query positions reports how much its queries
// attend to the context positions `tokens` (attention_token_map_forward, head
// mean), summed over those layers into `sum` [N, T, queries] f32 with their
// count in `layers`; the forward adds only while `collect` is set (a
// checkpointed backward reruns forwards). The backward adds the gradient of
// the layers' mean map, `d_mean` [N, T, queries], to each such layer's q and k.
struct TokenFocus {
  std::vector<double> tokens;
  int64_t queries = 0;
  bool collect = true;
  Tensor sum;
  int64_t layers = 0;
  Tensor d_mean;
};

struct UNetConfig {
  int64_t groups = 32;       // norm_num_groups (resnets, conv_norm_out, transformers' GroupNorm)
  double eps = 1e-5;         // norm_eps (resnets, conv_norm_out)
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  bool linear_projection = false;  // use_linear_projection: proj_in/out are linears, not 1x1 convs
  std::shared_ptr<TokenFocus> focus;  // null: no attention probe
  // Non-null: the forward appends the UNet encoder's features, each down
  // block's output (after its downsample) and the mid block's (the tuning
  // encoder's second backbone, DESIGN §1.3).
  std::shared_ptr<std::vector<Tensor>> features;
};

// Names below are diffusers' (relative to the module's prefix).
struct ResnetWeights {
  Tensor norm1_w, norm1_b;     // norm1 [Cin]
  Tensor conv1_w, conv1_b;     // conv1 [Cout, Cin, 3, 3]
  Tensor temb_w, temb_b;       // time_emb_proj [Cout, Temb]
  Tensor norm2_w, norm2_b;     // norm2 [Cout]
  Tensor conv2_w, conv2_b;     // conv2 [Cout, Cout, 3, 3]
  bool has_shortcut = false;   // conv_shortcut [Cout, Cin, 1, 1] when Cin != Cout
  Tensor shortcut_w, shortcut_b;
};

// A low-rank update one projection applies without merging it into W
// (models/unet_adapters.h, the per-sample LoRA kind): y = x·Wᵀ + s·(x·downᵀ)·upᵀ,
// down [N, r, in] and up [N, out, r] one per batch element (linear_lowrank).
struct LowRank {
  Tensor down, up;
  double scale = 1;
};

struct DualPath;

struct AttentionWeights {
  Tensor q_w, k_w, v_w;        // to_q [C, C], to_k/to_v [C, Ckv] (no bias)
  Tensor out_w, out_b;         // to_out.0 [C, C], [C]
  // Per-sample low-rank updates of to_q, to_k, to_v, to_out.0 (null: none).
  std::shared_ptr<const LowRank> q_lr, k_lr, v_lr, out_lr;
  // The dual path of the tuning encoder (null: one path).
  std::shared_ptr<const DualPath> dual;
};

// DESIGN §1.3's dual path: out = α·B(f, C_soft, W_adapted) + (1 − α)·B(f, C_hard, W).
// The attention runs twice: with these weights (adapted) on its own key/value
// input, and with `plain` (the unadapted projections) on kv_hard (the hard
// context for a cross-attention; empty for a self-attention, which attends to
// its own input on both paths).
struct DualPath {
  double alpha = 1;
  AttentionWeights plain;
  Tensor kv_hard;
};

struct TransformerBlockWeights {
  Tensor norm1_w, norm1_b;
  AttentionWeights attn1;      // self-attention
  Tensor norm2_w, norm2_b;
  AttentionWeights attn2;      // cross-attention over encoder_hidden_states
  Tensor norm3_w, norm3_b;
  Tensor ff1_w, ff1_b;         // ff.net.0.proj [8C, C] (GEGLU: value half, then gate half)
  Tensor ff2_w, ff2_b;         // ff.net.2 [C, 4C]
};

struct TransformerWeights {
  int64_t heads = 1;
  Tensor norm_w, norm_b;       // GroupNorm(groups, eps 1e-6)
  Tensor proj_in_w, proj_in_b;   // [C, C, 1, 1] or, with linear projection, [C, C]
  std::vector<TransformerBlockWeights> blocks;
  Tensor proj_out_w, proj_out_b;
};

// A down or up block: resnets, transformers (none for DownBlock2D/UpBlock2D),
// and the resampler conv (down: stride 2; up: after nearest 2x), absent in the last block.
struct UNetBlockWeights {
  std::vector<ResnetWeights> resnets;
  std::vector<TransformerWeights> attentions;
  bool has_resample = false;
  Tensor resample_w, resample_b;  // [C, C, 3, 3]
};

struct UNetWeights {
  Tensor conv_in_w, conv_in_b;
  Tensor time1_w, time1_b, time2_w, time2_b;  // time_embedding.linear_1/2
  std::vector<UNetBlockWeights> down, up;
  ResnetWeights mid_res0, mid_res1;
  TransformerWeights mid_attn;
  Tensor norm_out_w, norm_out_b;  // conv_norm_out [C0]
  Tensor conv_out_w, conv_out_b;  // conv_out [out_channels, C0, k, k]
};

// What the backward pass needs, kept by a training forward (see unet_forward).
struct ResnetActivations {
  Tensor x;                          // input (norm1's and the shortcut's input)
  Tensor norm1, norm1_mean, norm1_rstd;
  Tensor act1;                       // silu(norm1) (conv1's input)
  Tensor h;                          // conv1 + time projection (norm2's input)
  Tensor norm2, norm2_mean, norm2_rstd;
  Tensor act2;                       // silu(norm2) (conv2's input; dropout is identity)
};

struct AttentionActivations {
  Tensor q, k, v;                    // [N, heads, T, hd]
  Tensor o, lse;                     // attention output and log-sum-exp
  Tensor merged;                     // [N, T, C] (to_out's input)
  Tensor u_q, u_k, u_v, u_out;       // x·downᵀ of each per-sample low-rank projection
  std::shared_ptr<AttentionActivations> hard;  // the dual path's plain pass
};

struct TransformerBlockActivations {
  Tensor x;                          // block input [N, HW, C]
  Tensor ln1, ln1_mean, ln1_rstd;
  AttentionActivations attn1;
  Tensor h1;                         // after the self-attention residual
  Tensor ln2, ln2_mean, ln2_rstd;
  AttentionActivations attn2;
  Tensor h2;                         // after the cross-attention residual
  Tensor ln3, ln3_mean, ln3_rstd;
  Tensor ff1;                        // [N, HW, 8C] (GEGLU's input)
  Tensor geglu;                      // [N, HW, 4C] (ff.net.2's input)
};

struct TransformerActivations {
  Tensor x;                          // input [N, C, H, W] (the outer residual)
  Tensor norm, norm_mean, norm_rstd;
  Tensor tokens_in;                  // [N, HW, C] after proj_in
  std::vector<TransformerBlockActivations> blocks;
  Tensor tokens_out;                 // last block's output (proj_out's input)
};

struct UNetActivations {
  // Set by the caller before the forward: keep only each layer's input (and
  // the skip path's tensors); the backward recomputes a layer's activations
  // right before its backward and drops them after (activation checkpointing).
  bool checkpointed = false;
  Tensor t_proj, time1, time_act, emb, emb_act;  // the time embedding chain; emb_act = silu(emb)
  Tensor conv_in;
  std::vector<ResnetActivations> resnets;          // in execution order (empty when checkpointed)
  std::vector<TransformerActivations> transformers;  // in execution order (empty when checkpointed)
  std::vector<Tensor> layer_in;                    // checkpointed: each layer's input, in execution order
  std::vector<Tensor> resample_in;                 // each down/up resampler's input, in order
  std::vector<Tensor> concat_in;                   // up path: each concat's two inputs, in order
  Tensor norm_out_in, norm_out, norm_out_mean, norm_out_rstd, act_out;
};

// Runs the graph on the caller's thread (the device queue). sample
// [N, Cin, h, w], timestep [N] or [1] (same float dtype as the weights),
// context [N, T, D]; writes the prediction into `out` (preallocated
// [N, out_channels, h, w]). Shapes are checked by the op (unet_op.cc).
// acts == nullptr is inference: nothing is kept, each module's intermediates
// are freed when the module returns and only the skip tensors live across
// blocks. Otherwise the activations the backward needs go into *acts.
void unet_forward(const UNetConfig& config, const UNetWeights& w, const Tensor& sample, const Tensor& timestep,
                  const Tensor& context, Tensor& out, UNetActivations* acts = nullptr);

// One layer: a resnet, then (t not null) its transformer; returns the layer's
// output. Keeps the activations in *ra / *ta when given. The checkpointed
// backward reruns layers through this, so recomputed activations are the
// forward's own.
Tensor unet_layer(const UNetConfig& config, const ResnetWeights& r, const TransformerWeights* t, const Tensor& x,
                  const Tensor& emb_act, const Tensor& context, ResnetActivations* ra, TransformerActivations* ta);

}  // namespace models
}  // namespace imprint
