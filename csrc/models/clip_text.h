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
#include "models/clip_encoder.h"

namespace imprint {
namespace models {

struct ClipTextConfig {
  int64_t layers = 0;
  int64_t heads = 0;
  double eps = 1e-5;
  bool quick_gelu = true;  // false: exact erf GELU (OpenCLIP)
};

// The text encoder's layers: causal attention.
inline ClipEncoderOptions clip_text_encoder_options(const ClipTextConfig& c) {
  ClipEncoderOptions o;
  o.heads = c.heads, o.eps = c.eps, o.quick_gelu = c.quick_gelu, o.causal = true;
  return o;
}

using ClipTextLayerWeights = ClipLayerWeights;
using ClipTextLayerActivations = ClipLayerActivations;

struct ClipTextWeights {
  Tensor token_embedding;     // [V, H]
  Tensor position_embedding;  // [P, H]
  std::vector<ClipTextLayerWeights> layers;
  Tensor final_ln_w, final_ln_b;  // [H]
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
