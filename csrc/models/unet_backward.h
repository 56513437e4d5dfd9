// The UNet2DConditionModel backward pass (llm.c style: each module's backward
// written out, in reverse order, over the activations unet_forward kept).
// Input gradients always; weight gradients only for the weights marked
// trainable (every frozen conv/linear/norm runs with weightGrad off), so
// training attn2's K/V costs little more than the input gradients.
#pragma once
#include <map>
#include <set>

#include "models/unet.h"

namespace imprint {
namespace models {

struct UNetGrads {
  Tensor d_sample, d_context;
  // Keyed by the trainable weight's storage pointer (as given in `trainable`).
  std::map<const void*, Tensor> weights;
};

// `trainable` holds the data pointers of the weights that get gradients (any
// of the UNet's); others are frozen. detach_first_token: every cross-attention
// treats its key/value at context position 0 (the start-of-text token) as
// constants, so they pass no gradient to to_k/to_v or to the context.
UNetGrads unet_backward(const UNetConfig& config, const UNetWeights& w, const UNetActivations& acts,
                        const Tensor& sample, const Tensor& context, const Tensor& dy,
                        const std::set<const void*>& trainable, bool detach_first_token = false);

}  // namespace models
}  // namespace imprint
