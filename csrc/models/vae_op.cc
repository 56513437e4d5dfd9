// vae_encode and vae_decode: the VAE graphs (models/vae.h) as ops of the
// registry, so JavaScript runs them through nnOp.
// Attrs (both): blockOutChannels (list), layersPerBlock, latentChannels,
//   inChannels = 3, outChannels = 3, groups = 32, eps = 1e-6.
// vae_encode inputs: image [N, in, H, W] (H and W multiples of 2^(blocks-1)),
//   then every encoder.* weight in the layout's order (lib/models/layout-vae.ts:
//   conv_in, per down block its resnets (norm1, conv1, norm2, conv2,
//   conv_shortcut when the width changes; weight then bias) and downsampler,
//   the mid block (resnet 0, attention group_norm, to_q, to_k, to_v, to_out.0,
//   resnet 1), conv_norm_out, conv_out), then quant_conv.weight and .bias.
//   Outputs: mean, logvar [N, L, H/f, W/f] (logvar clamped to [-30, 20]).
// vae_decode inputs: latent [N, L, h, w], post_quant_conv.weight and .bias,
//   then every decoder.* weight in the layout's order.
//   Output: image [N, out, h·f, w·f].
#include <memory>
#include <string>
#include <vector>

#include "models/vae.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

models::VaeConfig read_config(const char* op, const Attrs& attrs) {
  models::VaeConfig c;
  c.block_out_channels = attrs.get_ints(op, "blockOutChannels");
  c.layers_per_block = attrs.get_int(op, "layersPerBlock");
  c.latent_channels = attrs.get_int(op, "latentChannels");
  c.in_channels = attrs.get_int(op, "inChannels", 3);
  c.out_channels = attrs.get_int(op, "outChannels", 3);
  c.groups = attrs.get_int(op, "groups", 32);
  c.eps = attrs.get_number(op, "eps", 1e-6);
  models::vae_check_config(op, c);
  return c;
}

// The sample input: 4-D, the weights' dtype and device, `channels` channels.
void check_sample(const char* op, const char* name, const Tensor& x, const Tensor& ref, int64_t channels,
                  int64_t multiple) {
  if (x.ndim() != 4) fail(ErrorCode::ShapeMismatch, std::string(op) + ": " + name + " must be [N, C, H, W], got " + x.describe());
  if (x.dtype != ref.dtype || x.device != ref.device) {
    fail(ErrorCode::DtypeMismatch, std::string(op) + ": " + name + " is " + x.describe() + " but the weights are " +
                                       ref.describe() + "; use one dtype and device");
  }
  if (x.shape[1] != channels) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": " + name + " must have " + std::to_string(channels) +
                                       " channels (dim 1), got " + x.describe());
  }
  if (x.shape[0] < 1 || x.shape[2] < 1 || x.shape[3] < 1 || x.shape[2] % multiple != 0 || x.shape[3] % multiple != 0) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": " + name + "'s height and width must be positive multiples of " +
                                       std::to_string(multiple) + " (the VAE's downsampling factor), got " + x.describe());
  }
}

std::vector<Tensor> weight_list(const OpInputs& inputs, const char* op) {
  std::vector<Tensor> out;
  for (size_t i = 1; i < inputs.size(); ++i) out.push_back(input(op, inputs, i, ("input " + std::to_string(i)).c_str()));
  return out;
}

void check_all_used(const char* op, size_t used, size_t given) {
  if (used != given) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": expected " + std::to_string(used) +
                                         " weights for this config, got " + std::to_string(given));
  }
}

Launch vae_encode(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "vae_encode";
  const models::VaeConfig c = read_config(op, attrs);
  const Tensor image = input(op, inputs, 0, "image");
  const std::vector<Tensor> list = weight_list(inputs, op);
  size_t next = 0;
  auto w = std::make_shared<models::VaeEncoderWeights>(models::vae_take_encoder(op, c, list, next));
  check_all_used(op, next, list.size());
  const int64_t f = models::vae_factor(c);
  check_sample(op, "image", image, w->conv_in_w, c.in_channels, f);

  const Shape lat_shape = {image.shape[0], c.latent_channels, image.shape[2] / f, image.shape[3] / f};
  Launch launch;
  launch.queue = image.device;
  launch.outputs = {Tensor::empty(lat_shape, image.dtype, image.device), Tensor::empty(lat_shape, image.dtype, image.device)};
  launch.output = launch.outputs.front();
  for (const Tensor* t : inputs) launch.inputs.push_back(*t);
  Tensor mean = launch.outputs[0], logvar = launch.outputs[1];
  launch.run = [c, w, image, mean, logvar]() mutable { models::vae_encode_forward(c, *w, image, mean, logvar); };
  return launch;
}

Launch vae_decode(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "vae_decode";
  const models::VaeConfig c = read_config(op, attrs);
  const Tensor latent = input(op, inputs, 0, "latent");
  const std::vector<Tensor> list = weight_list(inputs, op);
  size_t next = 0;
  auto w = std::make_shared<models::VaeDecoderWeights>(models::vae_take_decoder(op, c, list, next));
  check_all_used(op, next, list.size());
  check_sample(op, "latent", latent, w->post_quant_w, c.latent_channels, 1);

  const int64_t f = models::vae_factor(c);
  const Shape out_shape = {latent.shape[0], c.out_channels, latent.shape[2] * f, latent.shape[3] * f};
  shape_numel(out_shape, latent.dtype);  // throws when the image would be too large to address
  Launch launch;
  launch.queue = latent.device;
  launch.outputs = {Tensor::empty(out_shape, latent.dtype, latent.device)};
  launch.output = launch.outputs.front();
  for (const Tensor* t : inputs) launch.inputs.push_back(*t);
  Tensor image = launch.outputs[0];
  launch.run = [c, w, latent, image]() mutable { models::vae_decode_forward(c, *w, latent, image); };
  return launch;
}

}  // namespace

IMPRINT_REGISTER_OP(vae_encode, vae_encode);
IMPRINT_REGISTER_OP(vae_decode, vae_decode);

}  // namespace ops
}  // namespace imprint
