// The CLIP vision transformer's forward and backward graphs (see clip_vision.h).
#include "models/clip_vision.h"

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "models/model_util.h"
#include "ops/op_util.h"

namespace imprint {
namespace models {
namespace {

constexpr size_t kFirstLayerWeight = 5;

std::string prefix(const char* op) { return std::string(op) + ": "; }

Tensor add(const Tensor& a, const Tensor& b) { return run_now(ops::binary(BinaryOp::Add, a, b)).front(); }

ClipEncoderOptions encoder_options(const ClipVisionConfig& c) {
  ClipEncoderOptions o;
  o.heads = c.heads, o.eps = c.eps, o.quick_gelu = c.quick_gelu, o.causal = false;
  return o;
}

ops::Attrs patch_attrs(const ClipVisionConfig& c) {
  ops::Attrs a;
  a.numbers["stride"] = static_cast<double>(c.patch);
  return a;
}

ops::Attrs dim_attrs(int64_t dim) {
  ops::Attrs a;
  a.numbers["dim"] = static_cast<double>(dim);
  return a;
}

// The same [1, 1, H] row for each of B sequences: [B, 1, H].
Tensor repeat_rows(const Tensor& row, int64_t B) {
  const Tensor r = ops::reshape(row, {1, 1, row.shape[0]});
  ops::OpInputs list(static_cast<size_t>(B), &r);
  return run_op("concat_forward", list, dim_attrs(0)).front();
}

Tensor zeros(const Shape& shape, const Tensor& like) { return run_now(ops::full(shape, like.dtype, like.device, 0.0)).front(); }

}  // namespace

ClipVisionWeights clip_vision_weights_from_inputs(const char* op, const std::vector<const Tensor*>& inputs, size_t first,
                                                  int64_t layers) {
  auto in = [&](size_t i) { return ops::input(op, inputs, i, ("input " + std::to_string(i)).c_str()); };
  ClipVisionWeights w;
  w.class_embedding = in(first);
  w.patch_embedding = in(first + 1);
  w.position_embedding = in(first + 2);
  w.pre_ln_w = in(first + 3);
  w.pre_ln_b = in(first + 4);
  for (int64_t l = 0; l < layers; ++l) {
    w.layers.push_back(clip_layer_weights_from_inputs(op, inputs, first + kFirstLayerWeight + kClipLayerWeights * static_cast<size_t>(l)));
  }
  const size_t last = first + clip_vision_weight_count(layers);
  w.post_ln_w = in(last - 2);
  w.post_ln_b = in(last - 1);
  return w;
}

void clip_vision_check(const char* op, const ClipVisionConfig& c, const ClipVisionWeights& w, const Tensor& pixels) {
  if (c.layers < 1 || static_cast<int64_t>(w.layers.size()) != c.layers) {
    fail(ErrorCode::InvalidArgument, prefix(op) + "layers must be >= 1 and match the weights, got " + std::to_string(c.layers));
  }
  if (!(c.eps > 0) || !std::isfinite(c.eps)) fail(ErrorCode::InvalidArgument, prefix(op) + "eps must be a positive number");
  const Tensor& cls = w.class_embedding;
  if (cls.dtype != DType::F32 && cls.dtype != DType::F16 && cls.dtype != DType::BF16) {
    fail(ErrorCode::DtypeMismatch, prefix(op) + "embeddings.class_embedding must be a float tensor, got " + cls.describe());
  }
  if (cls.ndim() != 1) fail(ErrorCode::ShapeMismatch, prefix(op) + "embeddings.class_embedding must be [hidden_size], got " + cls.describe());
  const int64_t H = cls.shape[0];
  if (c.heads < 1 || H % c.heads != 0) {
    fail(ErrorCode::InvalidArgument, prefix(op) + "heads must be >= 1 and divide hidden_size " + std::to_string(H) + ", got " +
                                         std::to_string(c.heads));
  }
  if (pixels.dtype != cls.dtype || pixels.device != cls.device) {
    fail(ErrorCode::DtypeMismatch, prefix(op) + "pixel_values are " + pixels.describe() + " but the weights are " +
                                       cls.describe() + "; put them on one device in one dtype");
  }
  if (pixels.ndim() != 4 || pixels.shape[2] != pixels.shape[3] || c.patch < 1 || pixels.shape[2] % c.patch != 0) {
    fail(ErrorCode::ShapeMismatch, prefix(op) + "pixel_values must be [batch, channels, side, side] with side a multiple of patch_size " +
                                       std::to_string(c.patch) + ", got " + pixels.describe());
  }
  const int64_t C = pixels.shape[1], g = pixels.shape[2] / c.patch;
  clip_check_weight(op, cls, w.patch_embedding, "embeddings.patch_embedding.weight", {H, C, c.patch, c.patch});
  const Tensor& pos = w.position_embedding;
  if (pos.ndim() != 2 || pos.shape[1] != H || pos.shape[0] != g * g + 1) {
    fail(ErrorCode::ShapeMismatch, prefix(op) + "embeddings.position_embedding.weight must be [" + std::to_string(g * g + 1) + ", " +
                                       std::to_string(H) + "] for " + std::to_string(pixels.shape[2]) + "-pixel images in " +
                                       std::to_string(c.patch) + "-pixel patches, got " + pos.describe() +
                                       " (images must have the model's image_size)");
  }
  clip_check_weight(op, cls, pos, "embeddings.position_embedding.weight", pos.shape);
  clip_check_weight(op, cls, w.pre_ln_w, "pre_layrnorm.weight", {H});
  clip_check_weight(op, cls, w.pre_ln_b, "pre_layrnorm.bias", {H});
  const int64_t I = w.layers.front().fc1_w.ndim() == 2 ? w.layers.front().fc1_w.shape[0] : -1;
  if (I < 1) fail(ErrorCode::ShapeMismatch, prefix(op) + "encoder.layers.0.mlp.fc1.weight must be [intermediate_size, " + std::to_string(H) + "]");
  for (size_t i = 0; i < w.layers.size(); ++i) clip_layer_check(op, cls, w.layers[i], "encoder.layers." + std::to_string(i) + ".", H, I);
  clip_check_weight(op, cls, w.post_ln_w, "post_layernorm.weight", {H});
  clip_check_weight(op, cls, w.post_ln_b, "post_layernorm.bias", {H});
}

ClipVisionActivations clip_vision_forward(const ClipVisionConfig& c, const ClipVisionWeights& w, const Tensor& pixels,
                                          Tensor& last, Tensor& pooled) {
  const int64_t B = pixels.shape[0], H = w.class_embedding.shape[0];
  ClipVisionActivations acts;
  acts.pixels = pixels;
  const Tensor patches = run_op("conv2d_forward", {&pixels, &w.patch_embedding}, patch_attrs(c)).front();
  const Tensor tokens = to_tokens(patches);  // [B, g², H]
  const Tensor cls = repeat_rows(w.class_embedding, B);
  const Tensor joined = run_op("concat_forward", {&cls, &tokens}, dim_attrs(1)).front();
  acts.embeddings = add(joined, w.position_embedding);  // [B, S, H] + [S, H]
  ops::Attrs ln;
  ln.numbers["eps"] = c.eps;
  std::vector<Tensor> pre = run_op("layer_norm_forward", {&acts.embeddings, &w.pre_ln_w, &w.pre_ln_b}, ln);
  acts.pre_mean = pre[1], acts.pre_rstd = pre[2];
  const Tensor x = clip_layers_forward(encoder_options(c), w.layers, pre[0], acts.layers);
  backend_for(x.device).copy_on_device(last.data(), x.data(), x.nbytes());
  ops::Attrs sizes;
  sizes.numbers["dim"] = 1;
  sizes.lists["sizes"] = {1.0, static_cast<double>(x.shape[1] - 1)};
  acts.pooled_in = ops::reshape(run_op("split_forward", {&x}, sizes).front(), {B, H});
  std::tie(acts.post_mean, acts.post_rstd) = layer_norm_into(acts.pooled_in, w.post_ln_w, w.post_ln_b, c.eps, pooled);
  return acts;
}

void clip_vision_backward(const ClipVisionConfig& c, const ClipVisionWeights& w, const ClipVisionActivations& acts,
                          const Tensor* d_last, const Tensor* d_pooled, WeightGrads& g) {
  const int64_t B = acts.embeddings.shape[0], S = acts.embeddings.shape[1], H = acts.embeddings.shape[2];
  const size_t L = w.layers.size();
  const size_t post = kFirstLayerWeight + kClipLayerWeights * L;
  Tensor dx = d_last ? *d_last : zeros({B, S, H}, acts.embeddings);
  if (d_pooled) {
    // pooler_output = post_layernorm(x[:, 0]): its gradient lands on the class token's rows.
    const Tensor d_cls = ops::reshape(ln_backward(*d_pooled, acts.pooled_in, acts.post_mean, acts.post_rstd, w.post_ln_w, post, g), {B, 1, H});
    const Tensor rest = zeros({B, S - 1, H}, acts.embeddings);
    dx = add(dx, run_op("concat_forward", {&d_cls, &rest}, dim_attrs(1)).front());
  }
  const ClipEncoderOptions o = encoder_options(c);
  for (size_t li = L; li-- > 0;) dx = clip_layer_backward(o, w.layers[li], acts.layers[li], dx, kFirstLayerWeight + kClipLayerWeights * li, g);
  const Tensor d_emb = ln_backward(dx, acts.embeddings, acts.pre_mean, acts.pre_rstd, w.pre_ln_w, 3, g);
  if (g.want[2]) g.put(2, position_embedding_backward(d_emb, w.position_embedding.shape[0]));
  if (!g.want[0] && !g.want[1]) return;
  ops::Attrs sizes;
  sizes.numbers["dim"] = 1;
  sizes.lists["sizes"] = {1.0, static_cast<double>(S - 1)};
  std::vector<Tensor> parts = run_op("split_forward", {&d_emb}, sizes);
  if (g.want[0]) {
    // Σ over the batch of the class token's rows: an embedding backward of B lookups of row 0.
    std::vector<int64_t> zero(static_cast<size_t>(B), 0);
    Tensor ids = ops::from_host(zero.data(), zero.size() * sizeof(int64_t), {B, 1}, DType::I64, DType::I64);
    if (d_emb.device.type != DeviceType::CPU) ids = run_now(ops::to_device(ids, d_emb.device)).front();
    ops::Attrs a;
    a.numbers["vocab"] = 1;
    g.put(0, ops::reshape(run_op("embedding_backward", {&parts[0], &ids}, a).front(), {H}));
  }
  if (g.want[1]) {
    const int64_t side = acts.pixels.shape[2] / c.patch;
    const Tensor d_patches = from_tokens(parts[1], side, side);
    ops::Attrs a = patch_attrs(c);
    a.numbers["inputGrad"] = 0;  // the pixels are a constant
    a.numbers["weightGrad"] = 1;
    g.put(1, run_op("conv2d_backward", {&d_patches, &acts.pixels, &w.patch_embedding}, a)[0]);
  }
}

}  // namespace models
}  // namespace imprint
