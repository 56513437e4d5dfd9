// Attention adapters (DESIGN.md §2): each attention projection weight W
// (attn1/attn2 to_q, to_k, to_v, to_out.0.weight) may carry
//   a delta ΔW (Custom Diffusion), LoRA A [r, in], B [out, r] with scale s,
//   and a neuron mask m (u8, W's shape, 1 = shut, Cones):
//   W_eff = (W + ΔW + s·B·A) ⊙ (1 - m).
// W_eff is materialised once per op run with the registered ops; that is
// cheap next to the graph on the CPU (fused kernels come with the CUDA work).
// Backward, from dW_eff: dW' = dW_eff ⊙ (1 - m) is the gradient of W and of
// ΔW; dA = s·Bᵀ·dW', dB = s·dW'·Aᵀ.
#pragma once
#include <cstddef>
#include <map>
#include <string>

#include "models/unet.h"

namespace imprint {
namespace models {

struct AttentionAdapter {
  size_t weight = 0;   // index into the UNet's weights
  std::string name;    // that weight's name, for messages
  Tensor delta;        // empty when absent
  Tensor lora_a, lora_b;
  double scale = 1;
  Tensor mask;         // u8
  bool has_delta() const { return delta.data() != nullptr; }
  bool has_lora() const { return lora_a.data() != nullptr; }
  bool has_mask() const { return mask.data() != nullptr; }
};

// W_eff for `w` under `a`.
Tensor adapted_weight(const Tensor& w, const AttentionAdapter& a);
// dW' = dW_eff ⊙ (1 - m) (dW_eff itself without a mask).
Tensor masked_gradient(const Tensor& d_eff, const AttentionAdapter& a);
// dA = s·Bᵀ·dW' and dB = s·dW'·Aᵀ.
Tensor lora_a_gradient(const Tensor& d_masked, const AttentionAdapter& a);
Tensor lora_b_gradient(const Tensor& d_masked, const AttentionAdapter& a);

// Puts replacements[p] wherever an attention projection weight's data pointer is p.
void replace_projections(UNetWeights& w, const std::map<const void*, Tensor>& replacements);

}  // namespace models
}  // namespace imprint
