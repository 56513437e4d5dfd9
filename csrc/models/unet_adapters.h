// Attention adapters (DESIGN.md §2), the one place that knows them: parsing
// the op's `adapters` records and inputs, the execution path of each kind,
// and their gradients. Each attention projection weight W (attn1/attn2 to_q,
// to_k, to_v, to_out.0.weight) may carry
//   1 a delta ΔW (Custom Diffusion),
//   2 a LoRA A [r, in], B [out, r] with scale s, shared by the batch,
//   3 a neuron mask m (u8, W's shape, 1 = shut, Cones),
//   4 a per-sample LoRA down [N, r, in], up [N, out, r] with scale s (the
//     tuning encoder predicts one per image).
// Kinds 1-3 are materialised once per op run: W_eff = (W + ΔW + s·B·A) ⊙ (1 − m),
// cheap next to the graph. Kind 4 cannot be (W differs per sample): the graph
// runs that projection through linear_lowrank, y = x·W_effᵀ + s·(x·downᵀ)·upᵀ.
// The dual path (attr dualAlpha and a hard context) makes every attention run
// twice, adapted on the context and plain on the hard context, blended by α
// (unet.h, DualPath); a self-attention without adapters is left single, both
// of its paths being the same.
// Backward, from dW_eff: dW' = dW_eff ⊙ (1 − m) is the gradient of W and of
// ΔW; dA = s·Bᵀ·dW', dB = s·dW'·Aᵀ; kind 4's factors get theirs from
// linear_lowrank_backward.
#pragma once
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "models/unet.h"
#include "ops/op_registry.h"

namespace imprint {
namespace models {

struct AttentionAdapter {
  size_t weight = 0;   // index into the UNet's weights
  std::string name;    // that weight's name, for messages
  Tensor delta;        // empty when absent
  Tensor lora_a, lora_b;
  double scale = 1;
  Tensor mask;         // u8
  Tensor sample_down, sample_up;  // per-sample LoRA [N, r, in], [N, out, r]
  double sample_scale = 1;
  bool has_delta() const { return delta.data() != nullptr; }
  bool has_lora() const { return lora_a.data() != nullptr; }
  bool has_mask() const { return mask.data() != nullptr; }
  bool has_sample_lora() const { return sample_down.data() != nullptr; }
  // Whether W itself is replaced by a materialised W_eff.
  bool materialised() const { return has_delta() || has_lora() || has_mask(); }
};

// One adapter input (after the weights): which adapter and which part.
enum class AdapterPart { Delta, LoraA, LoraB, Mask, SampleDown, SampleUp };
struct AdapterInput {
  size_t adapter;  // index into AdapterSet::adapters
  AdapterPart part;
};

struct AdapterSet {
  std::vector<AttentionAdapter> adapters;  // by weight index, ascending
  std::vector<AdapterInput> inputs;        // the op's adapter inputs, in order
  double dual_alpha = -1;                  // the dual path's α; < 0: one path
  Tensor context_hard;                     // the dual path's hard context
  size_t next = 0;                         // the first input after them
  bool dual() const { return dual_alpha >= 0; }
};

// Reads attr `adapters` ([weightIndex, kind, ...] records; see the kinds
// above and unet_op.cc) and `dualAlpha`, and their inputs from `next` on:
// every record's inputs in record order, then the hard context. Checks each
// against its weight (names[w] is weight w, inputs[first + w]) and `batch`;
// errors start with `prefix` and name the weight by index and name.
AdapterSet parse_adapters(const std::string& prefix, const ops::OpInputs& inputs, const ops::Attrs& attrs, size_t first,
                          const std::vector<std::string>& names, size_t next, int64_t batch);

// The weights a run uses: every materialised projection replaced by its
// W_eff (effective[i] for adapters[i]; the original where nothing is
// materialised), per-sample LoRA attached, the dual path wired in.
UNetWeights adapted_weights(const UNetWeights& w, const AdapterSet& set, const std::vector<Tensor>& originals,
                            std::vector<Tensor>& effective);

// dW' = dW_eff ⊙ (1 - m) (dW_eff itself without a mask).
Tensor masked_gradient(const Tensor& d_eff, const AttentionAdapter& a);
// dA = s·Bᵀ·dW' and dB = s·dW'·Aᵀ.
Tensor lora_a_gradient(const Tensor& d_masked, const AttentionAdapter& a);
Tensor lora_b_gradient(const Tensor& d_masked, const AttentionAdapter& a);

}  // namespace models
}  // namespace imprint
