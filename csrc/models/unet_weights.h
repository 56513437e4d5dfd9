// Reading the UNet's weights from an op's inputs (unet_forward and
// unet_forward_backward share it): the config from the attrs, then every
// weight in unetLayout's order, each checked for shape, dtype and device,
// errors naming the weight.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/unet.h"
#include "ops/op_registry.h"

namespace imprint {
namespace models {

struct UNetWeightSet {
  UNetConfig config;
  std::shared_ptr<UNetWeights> w;
  std::vector<std::string> names;  // every weight's name, in input order
  size_t used = 0;                 // the first input after the weights
  int64_t cross = 0;               // cross_attention_dim (the attn2 to_k width)
};

// `op` names the op in messages; the weights are inputs [first, used).
UNetWeightSet read_unet_weights(const char* op, const ops::OpInputs& inputs, const ops::Attrs& attrs, size_t first);

}  // namespace models
}  // namespace imprint
