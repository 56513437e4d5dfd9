// The CLIP vision transformer (models/clip_vision.h) as ops of the registry:
// clip_vision_forward(pixel_values [B, C, R, R], weights...)
//   → last_hidden_state [B, S, H], pooler_output [B, H]
// clip_vision_forward_backward(pixel_values, dLast? [B, S, H], dPooled? [B, H], weights...)
//   → last_hidden_state, pooler_output, then one gradient per trainable index
// Weights, in order: embeddings.class_embedding, embeddings.patch_embedding.weight,
//   embeddings.position_embedding.weight, pre_layrnorm.weight, .bias, 16 per
//   layer (as clip_text_forward's), post_layernorm.weight, .bias.
// Attrs: layers, heads, patch, eps = 1e-5, quickGelu = true; trainable = []
//   (weight indices, ascending) for the backward.
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "models/clip_vision.h"
#include "models/model_util.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

models::ClipVisionConfig config_from(const char* op, const Attrs& attrs) {
  models::ClipVisionConfig c;
  c.layers = attrs.get_int(op, "layers");
  c.heads = attrs.get_int(op, "heads");
  c.patch = attrs.get_int(op, "patch");
  c.eps = attrs.get_number(op, "eps", 1e-5);
  c.quick_gelu = attrs.get_bool(op, "quickGelu", true);
  if (c.layers < 1 || c.layers > 1024) fail(ErrorCode::InvalidArgument, std::string(op) + ": layers must be 1 to 1024, got " + std::to_string(c.layers));
  return c;
}

void check_count(const char* op, const OpInputs& inputs, size_t first, int64_t layers, const char* lead) {
  const size_t expected = first + models::clip_vision_weight_count(layers);
  if (inputs.size() != expected) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": expected " + std::to_string(expected) + " inputs for " +
                                         std::to_string(layers) + " layers (" + lead + ", 5 embedding weights, 16 per layer, "
                                         "2 for the post layer norm), got " + std::to_string(inputs.size()));
  }
}

Launch clip_vision_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "clip_vision_forward";
  const models::ClipVisionConfig config = config_from(op, attrs);
  check_count(op, inputs, 1, config.layers, "pixel_values");
  const Tensor pixels = input(op, inputs, 0, "pixel_values");
  auto weights = std::make_shared<models::ClipVisionWeights>(models::clip_vision_weights_from_inputs(op, inputs, 1, config.layers));
  models::clip_vision_check(op, config, *weights, pixels);
  const Tensor& cls = weights->class_embedding;
  const int64_t B = pixels.shape[0], H = cls.shape[0], S = weights->position_embedding.shape[0];
  Launch launch;
  launch.queue = cls.device;
  launch.outputs = {Tensor::empty({B, S, H}, cls.dtype, cls.device), Tensor::empty({B, H}, cls.dtype, cls.device)};
  launch.output = launch.outputs.front();
  for (const Tensor* t : inputs) launch.inputs.push_back(*t);
  Tensor last = launch.outputs[0], pooled = launch.outputs[1];
  launch.run = [config, weights, pixels, last, pooled]() mutable {
    models::clip_vision_forward(config, *weights, pixels, last, pooled);
  };
  return launch;
}

Launch clip_vision_forward_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "clip_vision_forward_backward";
  const std::string pre = std::string(op) + ": ";
  const models::ClipVisionConfig config = config_from(op, attrs);
  constexpr size_t kFirstWeight = 3;
  check_count(op, inputs, kFirstWeight, config.layers, "pixel_values, dLast?, dPooled?");
  const Tensor pixels = input(op, inputs, 0, "pixel_values");
  const Tensor* d_last_p = optional_input(inputs, 1);
  const Tensor* d_pooled_p = optional_input(inputs, 2);
  auto weights = std::make_shared<models::ClipVisionWeights>(models::clip_vision_weights_from_inputs(op, inputs, kFirstWeight, config.layers));
  models::clip_vision_check(op, config, *weights, pixels);
  const Tensor& cls = weights->class_embedding;
  const int64_t B = pixels.shape[0], H = cls.shape[0], S = weights->position_embedding.shape[0];
  auto check_d = [&](const Tensor* d, const char* name, const Shape& shape) {
    if (!d) return;
    if (d->dtype != cls.dtype || d->device != cls.device) {
      fail(ErrorCode::DtypeMismatch, pre + name + " is " + d->describe() + " but the weights are " + cls.describe());
    }
    if (d->shape != shape) fail(ErrorCode::ShapeMismatch, pre + name + " must be " + shape_str(shape) + " (its output's shape), got " + d->describe());
  };
  check_d(d_last_p, "dLast", {B, S, H});
  check_d(d_pooled_p, "dPooled", {B, H});
  const size_t n_weights = models::clip_vision_weight_count(config.layers);
  auto grads = std::make_shared<models::WeightGrads>();
  const std::vector<int64_t> trainable = attrs.get_ints(op, "trainable", {});
  grads->want_trainable(pre, n_weights, trainable);

  Launch launch;
  launch.queue = cls.device;
  launch.outputs = {Tensor::empty({B, S, H}, cls.dtype, cls.device), Tensor::empty({B, H}, cls.dtype, cls.device)};
  std::vector<Tensor> grad_out;
  for (int64_t t : trainable) {
    const Tensor& wt = *inputs[kFirstWeight + static_cast<size_t>(t)];
    grad_out.push_back(Tensor::empty(wt.shape, wt.dtype, wt.device));
    launch.outputs.push_back(grad_out.back());
  }
  launch.output = launch.outputs.front();
  for (const Tensor* t : inputs) {
    if (t) launch.inputs.push_back(*t);
  }
  Tensor last = launch.outputs[0], pooled = launch.outputs[1];
  Tensor d_last = d_last_p ? *d_last_p : Tensor(), d_pooled = d_pooled_p ? *d_pooled_p : Tensor();
  const bool has_last = d_last_p != nullptr, has_pooled = d_pooled_p != nullptr;
  launch.run = [config, weights, pixels, last, pooled, d_last, d_pooled, has_last, has_pooled, grads, trainable, grad_out]() mutable {
    const models::ClipVisionActivations acts = models::clip_vision_forward(config, *weights, pixels, last, pooled);
    models::clip_vision_backward(config, *weights, acts, has_last ? &d_last : nullptr, has_pooled ? &d_pooled : nullptr, *grads);
    grads->copy_out(trainable, grad_out);  // zeros for a weight no given output depends on (the post norm without dPooled)
    backend_for(last.device).synchronize();
    grads->release();
  };
  return launch;
}

}  // namespace

IMPRINT_REGISTER_OP(clip_vision_forward, clip_vision_forward);
IMPRINT_REGISTER_OP(clip_vision_forward_backward, clip_vision_forward_backward);

}  // namespace ops
}  // namespace imprint
