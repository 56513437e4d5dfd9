// The CLIP text encoder's forward graph (see clip_text.h).
#include "models/clip_text.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/args/norm.h"
#include "core/backend.h"
#include "core/error.h"
#include "models/model_util.h"
#include "ops/op_util.h"

namespace imprint {
namespace models {
namespace {

std::string prefix(const char* op) { return std::string(op) + ": "; }

Tensor add(const Tensor& a, const Tensor& b) { return run_now(ops::binary(BinaryOp::Add, a, b)).front(); }

}  // namespace

void clip_text_check(const char* op, const ClipTextConfig& c, const ClipTextWeights& w, const Tensor& ids) {
  if (c.layers < 1) fail(ErrorCode::InvalidArgument, prefix(op) + "layers must be >= 1, got " + std::to_string(c.layers));
  if (static_cast<int64_t>(w.layers.size()) != c.layers) {
    fail(ErrorCode::InvalidArgument, prefix(op) + "expected weights for " + std::to_string(c.layers) + " layers, got " +
                                         std::to_string(w.layers.size()));
  }
  if (!(c.eps > 0) || !std::isfinite(c.eps)) {
    fail(ErrorCode::InvalidArgument, prefix(op) + "eps must be a positive number, got " + std::to_string(c.eps));
  }
  const Tensor& tok = w.token_embedding;
  if (tok.dtype != DType::F32 && tok.dtype != DType::F16 && tok.dtype != DType::BF16) {
    fail(ErrorCode::DtypeMismatch, prefix(op) + "token_embedding.weight must be a float tensor, got " + tok.describe());
  }
  if (tok.ndim() != 2) {
    fail(ErrorCode::ShapeMismatch, prefix(op) + "token_embedding.weight must be [vocab_size, hidden_size], got " +
                                       tok.describe());
  }
  const int64_t H = tok.shape[1];
  if (c.heads < 1 || H % c.heads != 0) {
    fail(ErrorCode::InvalidArgument, prefix(op) + "heads must be >= 1 and divide hidden_size " + std::to_string(H) +
                                         ", got " + std::to_string(c.heads));
  }
  const Tensor& pos = w.position_embedding;
  if (pos.ndim() != 2 || pos.shape[1] != H) {
    fail(ErrorCode::ShapeMismatch, prefix(op) + "position_embedding.weight must be [max_position_embeddings, " +
                                       std::to_string(H) + "], got " + pos.describe());
  }
  clip_check_weight(op, tok, pos, "position_embedding.weight", pos.shape);
  const int64_t I = w.layers.front().fc1_w.ndim() == 2 ? w.layers.front().fc1_w.shape[0] : -1;
  if (I < 1) {
    fail(ErrorCode::ShapeMismatch, prefix(op) + "encoder.layers.0.mlp.fc1.weight must be [intermediate_size, " +
                                       std::to_string(H) + "], got " + w.layers.front().fc1_w.describe());
  }
  for (size_t i = 0; i < w.layers.size(); ++i) {
    clip_layer_check(op, tok, w.layers[i], "encoder.layers." + std::to_string(i) + ".", H, I);
  }
  clip_check_weight(op, tok, w.final_ln_w, "final_layer_norm.weight", {H});
  clip_check_weight(op, tok, w.final_ln_b, "final_layer_norm.bias", {H});
  if (ids.dtype != DType::I32 && ids.dtype != DType::I64) {
    fail(ErrorCode::DtypeMismatch, prefix(op) + "input_ids must be i32 or i64, got " + ids.describe());
  }
  if (ids.ndim() != 2) {
    fail(ErrorCode::ShapeMismatch, prefix(op) + "input_ids must be [batch, tokens], got " + ids.describe());
  }
  if (ids.device != tok.device) {
    fail(ErrorCode::DeviceMismatch, prefix(op) + "input_ids are " + ids.describe() + " but the weights are " +
                                        tok.describe() + "; put them on one device");
  }
  if (ids.shape[1] > pos.shape[0]) {
    fail(ErrorCode::ShapeMismatch, prefix(op) + "input_ids have " + std::to_string(ids.shape[1]) +
                                       " tokens but max_position_embeddings is " + std::to_string(pos.shape[0]));
  }
}

void clip_text_check_ids(const char* op, const Tensor& ids, int64_t vocab) {
  const int64_t n = ids.numel(), T = ids.ndim() == 2 ? ids.shape[1] : n;
  const size_t width = ids.dtype == DType::I32 ? sizeof(int32_t) : sizeof(int64_t);
  // Ids on a GPU are copied here first: their values decide whether the
  // embedding kernel may run, and the device kernel cannot throw.
  std::vector<char> host;
  const char* data = static_cast<const char*>(ids.data());
  if (!ids.device.is_cpu() && n > 0) {
    host.resize(static_cast<size_t>(n) * width);
    Backend& backend = backend_for(ids.device);
    backend.copy_to_host(host.data(), ids.data(), host.size());
    backend.synchronize();
    data = host.data();
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ids.dtype == DType::I32 ? reinterpret_cast<const int32_t*>(data)[i]
                                               : reinterpret_cast<const int64_t*>(data)[i];
    if (id < 0 || id >= vocab) {
      fail(ErrorCode::InvalidArgument, prefix(op) + "input_ids[" + std::to_string(i / T) + "][" +
                                           std::to_string(i % T) + "] = " + std::to_string(id) +
                                           " is out of range for vocab_size " + std::to_string(vocab) +
                                           " (valid ids are 0 to " + std::to_string(vocab - 1) + ")");
    }
  }
}

ClipTextActivations clip_text_forward(const ClipTextConfig& c, const ClipTextWeights& w, const Tensor& ids,
                                      Tensor& last, Tensor* penultimate) {
  const int64_t T = ids.shape[1];
  const Device device = w.token_embedding.device;
  ClipTextActivations acts;

  // Positions 0..T-1 as ids into the position table.
  std::vector<int64_t> positions(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) positions[static_cast<size_t>(t)] = t;
  Tensor pos_ids = ops::from_host(positions.data(), positions.size() * sizeof(int64_t), {T}, DType::I64, DType::I64);
  if (device.type != DeviceType::CPU) pos_ids = run_now(ops::to_device(pos_ids, device)).front();
  const Tensor tok = run_op("embedding_forward", {&ids, &w.token_embedding}).front();
  const Tensor pos = run_op("embedding_forward", {&pos_ids, &w.position_embedding}).front();
  acts.embeddings = add(tok, pos);  // [B, T, H] + [T, H]

  const Tensor x = clip_layers_forward(clip_text_encoder_options(c), w.layers, acts.embeddings, acts.layers);
  acts.final_in = x;
  std::tie(acts.final_mean, acts.final_rstd) = layer_norm_into(x, w.final_ln_w, w.final_ln_b, c.eps, last);
  if (penultimate) {
    std::tie(acts.penult_mean, acts.penult_rstd) =
        layer_norm_into(acts.layers.back().x, w.final_ln_w, w.final_ln_b, c.eps, *penultimate);
  }
  return acts;
}

ClipTextWeights clip_text_weights_from_inputs(const char* op, const std::vector<const Tensor*>& inputs, size_t first,
                                              int64_t layers) {
  auto in = [&](size_t i) { return ops::input(op, inputs, i, ("input " + std::to_string(i)).c_str()); };
  ClipTextWeights w;
  w.token_embedding = in(first);
  w.position_embedding = in(first + 1);
  for (int64_t l = 0; l < layers; ++l) {
    w.layers.push_back(clip_layer_weights_from_inputs(op, inputs, first + 2 + kClipLayerWeights * static_cast<size_t>(l)));
  }
  const size_t last = first + clip_text_weight_count(layers);
  w.final_ln_w = in(last - 2);
  w.final_ln_b = in(last - 1);
  return w;
}

}  // namespace models
}  // namespace imprint
