// The CLIP transformer encoder's layers, shared by the text encoder (causal
// attention) and the vision transformer (full attention), llm.c style: an
// explicit forward that keeps what the backward needs, and that backward.
//   per layer: h = x + out_proj(attention(q, k, v of ln1(x)))
//              x = h + fc2(act(fc1(ln2(h))))      act = quick_gelu or gelu
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace imprint {
namespace models {

struct ClipEncoderOptions {
  int64_t heads = 0;
  double eps = 1e-5;
  bool quick_gelu = true;  // false: exact erf GELU (OpenCLIP)
  bool causal = false;     // the text encoder's mask
};

// Names are transformers' (under *.encoder.layers.N.); 16 per layer, in this order.
struct ClipLayerWeights {
  Tensor ln1_w, ln1_b;          // layer_norm1 [H]
  Tensor q_w, q_b, k_w, k_b;    // self_attn.{q,k}_proj [H, H], [H]
  Tensor v_w, v_b, out_w, out_b;  // self_attn.{v,out}_proj [H, H], [H]
  Tensor ln2_w, ln2_b;          // layer_norm2 [H]
  Tensor fc1_w, fc1_b;          // mlp.fc1 [I, H], [I]
  Tensor fc2_w, fc2_b;          // mlp.fc2 [H, I], [H]
};
constexpr size_t kClipLayerWeights = 16;

// What a layer's backward needs.
struct ClipLayerActivations {
  Tensor x;                    // layer input [B, T, H] (residual, ln1's input)
  Tensor ln1, ln1_mean, ln1_rstd;  // ln1 output and stats (q/k/v projections' input)
  Tensor q, k, v;              // [B, heads, T, hd] (attention's inputs)
  Tensor attn_o, attn_lse;     // attention output [B, heads, T, hd] and its log-sum-exp
  Tensor attn_merged;          // [B, T, H] (out_proj's input)
  Tensor h;                    // after the attention residual (ln2's input)
  Tensor ln2, ln2_mean, ln2_rstd;  // (fc1's input)
  Tensor fc1;                  // pre-activation [B, T, I] (the activation's input)
  Tensor act;                  // [B, T, I] (fc2's input)
};

// Reads 16 layer weights from `inputs` starting at `first`.
ClipLayerWeights clip_layer_weights_from_inputs(const char* op, const std::vector<const Tensor*>& inputs, size_t first);
// Checks a layer's weights against `ref` (dtype, device) and H, I; names them under `prefix` (e.g. "encoder.layers.0.").
void clip_layer_check(const char* op, const Tensor& ref, const ClipLayerWeights& l, const std::string& prefix, int64_t H,
                      int64_t I);

// Runs the layers on x [B, T, H], appending each one's activations to `acts`; returns the last output.
Tensor clip_layers_forward(const ClipEncoderOptions& o, const std::vector<ClipLayerWeights>& layers, Tensor x,
                           std::vector<ClipLayerActivations>& acts);

// A layer norm over x's last dim written straight into a preallocated `out`
// (an op's result tensor, which exists before the graph runs); returns mean and rstd.
std::pair<Tensor, Tensor> layer_norm_into(const Tensor& x, const Tensor& w, const Tensor& b, double eps, Tensor& out);

// The gradients a backward is asked for, by weight index; a weight used
// twice (e.g. a final layer norm applied to two states) accumulates.
struct WeightGrads {
  std::vector<bool> want;
  std::vector<Tensor> got;
  void put(size_t i, const Tensor& t);
  // Wants the weights listed in `trainable` (indices below n_weights, ascending, no repeats;
  // `pre` begins the error otherwise). One slot past the last weight: a bias read there is safe.
  void want_trainable(const std::string& pre, size_t n_weights, const std::vector<int64_t>& trainable);
  // Copies the gradients of `trainable` into `out` (same order; a weight no output depended on
  // gets zeros). Synchronize, then release(): a launch outliving its run must not keep the scratch.
  void copy_out(const std::vector<int64_t>& trainable, const std::vector<Tensor>& out) const;
  void release() { got.assign(got.size(), Tensor()); }
};

// Fails (naming `op` and `name`) unless t shares ref's dtype and device and has `shape`.
void clip_check_weight(const char* op, const Tensor& ref, const Tensor& t, const std::string& name, const Shape& shape);

// A layer norm's backward; dweight / dbias (indices wi, wi + 1) only when wanted.
Tensor ln_backward(const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& w,
                   size_t wi, WeightGrads& g);
// A linear's backward; frozen weights cost only the input gradient.
Tensor linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, size_t wi, WeightGrads& g);

// The gradient of a position table [positions, H] that added rows 0..T-1 to
// every sequence of x [B, T, H], from dx (x's gradient).
Tensor position_embedding_backward(const Tensor& dx, int64_t positions);

// One layer's backward from dOut (its output's gradient) to its input's; the
// layer's weights have indices first .. first + 15.
Tensor clip_layer_backward(const ClipEncoderOptions& o, const ClipLayerWeights& l, const ClipLayerActivations& a,
                           const Tensor& d_out, size_t first, WeightGrads& g);

}  // namespace models
}  // namespace imprint
