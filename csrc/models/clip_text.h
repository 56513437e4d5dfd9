// The CLIP text encoder (transformers' CLIPTextModel) as an explicit forward
// graph over the registered kernels, llm.c style:
//   x = token_embedding[ids] + position_embedding[0..T-1]
//   per layer: h = x + out_proj(attention(q, k, v of ln1(x)), causal)
//              x = h + fc2(act(fc1(ln2(h))))      act = quick_gelu or gelu
//   last_hidden_state = final_layer_norm(x)
//   penultimate       = final_layer_norm(input of the last layer)
//                       (SD2's conditioning: hidden_states[-2] normed)
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace imprint {
namespace models {

struct ClipTextConfig {
  int64_t layers = 0;
  int64_t heads = 0;
  double eps = 1e-5;
  bool quick_gelu = true;  // false: exact erf GELU (OpenCLIP)
};

// Names are transformers' (under text_model.encoder.layers.N.).
struct ClipTextLayerWeights {
  Tensor ln1_w, ln1_b;          // layer_norm1 [H]
  Tensor q_w, q_b, k_w, k_b;    // self_attn.{q,k}_proj [H, H], [H]
  Tensor v_w, v_b, out_w, out_b;  // self_attn.{v,out}_proj [H, H], [H]
  Tensor ln2_w, ln2_b;          // layer_norm2 [H]
  Tensor fc1_w, fc1_b;          // mlp.fc1 [I, H], [I]
  Tensor fc2_w, fc2_b;          // mlp.fc2 [H, I], [H]
};

struct ClipTextWeights {
  Tensor token_embedding;     // [V, H]
  Tensor position_embedding;  // [P, H]
  std::vector<ClipTextLayerWeights> layers;
  Tensor final_ln_w, final_ln_b;  // [H]
};

// What a backward pass will need, per layer (kept now; the backward is a later step).
struct ClipTextLayerActivations {
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

struct ClipTextActivations {
  Tensor embeddings;  // [B, T, H]
  std::vector<ClipTextLayerActivations> layers;
  Tensor final_in;                   // the last layer's output (final norm's input)
  Tensor final_mean, final_rstd;     // final norm stats of final_in
  Tensor penult_mean, penult_rstd;   // final norm stats of the last layer's input, when asked
};

// The weights from an op's inputs: `inputs[first]` is the token embedding,
// then the position embedding, 16 per layer in ClipTextLayerWeights' order
// (ln1 w/b, q, k, v, out w/b, ln2 w/b, fc1 w/b, fc2 w/b) and the final layer
// norm's weight and bias — the order lib/models/layout-clip.ts's
// clipTextWeightNames gives. Throws naming a missing input.
ClipTextWeights clip_text_weights_from_inputs(const char* op, const std::vector<const Tensor*>& inputs, size_t first,
                                              int64_t layers);
// Inputs a CLIP op takes for its weights.
inline size_t clip_text_weight_count(int64_t layers) { return 2 + 16 * static_cast<size_t>(layers) + 2; }

// Checks every weight's dtype, device and shape against the config and the
// token table (hidden size H, vocab V), and ids' dtype (i32/i64), rank
// ([B, T]) and T ≤ P. Throws naming the offending tensor by transformers'
// name. Does not read ids' values (see clip_text_check_ids).
void clip_text_check(const char* op, const ClipTextConfig& config, const ClipTextWeights& w, const Tensor& ids);
// Reads ids (on the CPU) and throws naming the first id outside [0, V).
void clip_text_check_ids(const char* op, const Tensor& ids, int64_t vocab);

// Runs the graph on the caller's thread (the device queue), writing
// last_hidden_state into `last` and, when `penultimate` is non-null, the
// normed penultimate hidden state into it (both preallocated [B, T, H]).
ClipTextActivations clip_text_forward(const ClipTextConfig& config, const ClipTextWeights& w, const Tensor& ids,
                                      Tensor& last, Tensor* penultimate);

}  // namespace models
}  // namespace imprint
