// The CLIP vision transformer (transformers' CLIPVisionModel) as an explicit
// forward graph with its backward, over the registered kernels:
//   patches = conv(pixel_values, patch_embedding, stride = patch)  [B, H, g, g] → [B, g², H]
//   x = [class_embedding; patches] + position_embedding           [B, 1 + g², H]
//   x = pre_layrnorm(x), then the CLIP encoder layers (full attention)
//   last_hidden_state = x                 (no final norm, as transformers)
//   pooler_output     = post_layernorm(x[:, 0])
// The tuning encoder's backbone (DESIGN §1.3).
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "models/clip_encoder.h"

namespace imprint {
namespace models {

struct ClipVisionConfig {
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t patch = 0;
  double eps = 1e-5;
  bool quick_gelu = true;
};

// Names are transformers' (under vision_model.).
struct ClipVisionWeights {
  Tensor class_embedding;     // embeddings.class_embedding [H]
  Tensor patch_embedding;     // embeddings.patch_embedding.weight [H, C, patch, patch] (no bias)
  Tensor position_embedding;  // embeddings.position_embedding.weight [1 + g², H]
  Tensor pre_ln_w, pre_ln_b;  // pre_layrnorm [H] (transformers' spelling)
  std::vector<ClipLayerWeights> layers;
  Tensor post_ln_w, post_ln_b;  // post_layernorm [H]
};

struct ClipVisionActivations {
  Tensor pixels;                    // the input (the patch convolution's)
  Tensor embeddings;                // [B, S, H] (pre_layrnorm's input)
  Tensor pre_mean, pre_rstd;
  std::vector<ClipLayerActivations> layers;
  Tensor pooled_in;                 // [B, H]: the class token's row of the last state
  Tensor post_mean, post_rstd;
};

// Inputs a vision op takes for its weights: 5, 16 per layer, 2.
inline size_t clip_vision_weight_count(int64_t layers) { return 5 + kClipLayerWeights * static_cast<size_t>(layers) + 2; }
// The weights from an op's inputs, from `first` on, in ClipVisionWeights' order
// (lib/models/layout-clip-vision.ts's clipVisionWeightNames).
ClipVisionWeights clip_vision_weights_from_inputs(const char* op, const std::vector<const Tensor*>& inputs, size_t first,
                                                  int64_t layers);
// Checks every weight (dtype, device, shape by transformers' name) and the
// pixels ([B, C, R, R] with (R / patch)² + 1 positions).
void clip_vision_check(const char* op, const ClipVisionConfig& c, const ClipVisionWeights& w, const Tensor& pixels);

// Runs the graph, writing last_hidden_state [B, S, H] and pooler_output [B, H] into the preallocated outputs.
ClipVisionActivations clip_vision_forward(const ClipVisionConfig& c, const ClipVisionWeights& w, const Tensor& pixels,
                                          Tensor& last, Tensor& pooled);

// The backward from dLast (or none) and dPooled (or none) into the wanted
// weight gradients (indices as the weight inputs: 0 class_embedding, 1 patch, 2 positions, ...).
void clip_vision_backward(const ClipVisionConfig& c, const ClipVisionWeights& w, const ClipVisionActivations& acts,
                          const Tensor* d_last, const Tensor* d_pooled, WeightGrads& g);

}  // namespace models
}  // namespace imprint
