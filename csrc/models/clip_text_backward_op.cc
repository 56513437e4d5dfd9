// clip_text_forward_backward: the CLIP text encoder's forward graph
// (models/clip_text.h) followed by its backward pass, as one registered op.
// Inputs, in order:
//   0 input_ids i32|i64 [B, T]
//   1 dLast [B, T, H] (gradient of last_hidden_state)
//   2 dPenultimate? [B, T, H] (gradient of the normed penultimate state)
//   3 rowMask? u8 [V] (token-embedding rows that get a gradient; others are 0)
//   4.. the weights in clip_text_forward's order (token, position, 16 per layer, final LN).
// Attrs: layers, heads, eps = 1e-5, quickGelu = true, trainable = [] (weight
//   indices into the weight list, ascending: 0 = token embedding).
// Outputs: last_hidden_state, then penultimate when dPenultimate is given,
//   then one gradient per trainable index, in the order given.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "models/clip_text.h"
#include "models/model_util.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

constexpr size_t kPerLayer = models::kClipLayerWeights;
constexpr size_t kFirstWeight = 4;

Tensor add(const Tensor& a, const Tensor& b) { return models::run_now(binary(BinaryOp::Add, a, b)).front(); }

using models::WeightGrads;

void backward(const models::ClipTextConfig& c, const models::ClipTextWeights& w, const models::ClipTextActivations& acts,
              const Tensor& ids, const Tensor& d_last, const Tensor* d_penult, const Tensor* row_mask, WeightGrads& g) {
  const size_t L = w.layers.size();
  const size_t final_w = 2 + kPerLayer * L;
  Tensor dx = models::ln_backward(d_last, acts.final_in, acts.final_mean, acts.final_rstd, w.final_ln_w, final_w, g);
  const models::ClipEncoderOptions o = models::clip_text_encoder_options(c);
  for (size_t li = L; li-- > 0;) {
    const models::ClipTextLayerActivations& a = acts.layers[li];
    dx = models::clip_layer_backward(o, w.layers[li], a, dx, 2 + kPerLayer * li, g);
    if (li + 1 == L && d_penult) {
      // penultimate = final_layer_norm(the last layer's input)
      dx = add(dx, models::ln_backward(*d_penult, a.x, acts.penult_mean, acts.penult_rstd, w.final_ln_w, final_w, g));
    }
  }
  // dx is now the gradient of token_embedding[ids] + position_embedding[0..T-1].
  if (g.want[0]) {
    Attrs a;
    a.numbers["vocab"] = static_cast<double>(w.token_embedding.shape[0]);
    g.put(0, models::run_op("embedding_backward", {&dx, &ids, row_mask}, a).front());
  }
  if (g.want[1]) g.put(1, models::position_embedding_backward(dx, w.position_embedding.shape[0]));
}

Launch clip_text_forward_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "clip_text_forward_backward";
  const std::string pre = std::string(op) + ": ";
  models::ClipTextConfig config;
  config.layers = attrs.get_int(op, "layers");
  config.heads = attrs.get_int(op, "heads");
  config.eps = attrs.get_number(op, "eps", 1e-5);
  config.quick_gelu = attrs.get_bool(op, "quickGelu", true);
  if (config.layers < 1 || config.layers > 1024) {
    fail(ErrorCode::InvalidArgument, pre + "layers must be 1 to 1024, got " + std::to_string(config.layers));
  }
  const size_t n_weights = models::clip_text_weight_count(config.layers);
  const size_t expected = kFirstWeight + n_weights;
  if (inputs.size() != expected) {
    fail(ErrorCode::InvalidArgument, pre + "expected " + std::to_string(expected) + " inputs for " +
                                         std::to_string(config.layers) + " layers (input_ids, dLast, dPenultimate?, "
                                         "rowMask?, 2 embeddings, 16 per layer, 2 for the final layer norm), got " +
                                         std::to_string(inputs.size()));
  }
  auto in = [&](size_t i) { return input(op, inputs, i, ("input " + std::to_string(i)).c_str()); };
  const Tensor ids = in(0);
  const Tensor d_last = input(op, inputs, 1, "dLast");
  const Tensor* d_penult_p = optional_input(inputs, 2);
  const Tensor* row_mask_p = optional_input(inputs, 3);
  auto weights = std::make_shared<models::ClipTextWeights>(
      models::clip_text_weights_from_inputs(op, inputs, kFirstWeight, config.layers));
  models::clip_text_check(op, config, *weights, ids);

  const Tensor& tok = weights->token_embedding;
  const int64_t B = ids.shape[0], T = ids.shape[1], H = tok.shape[1], vocab = tok.shape[0];
  const Shape out_shape = {B, T, H};
  auto check_dy = [&](const Tensor& d, const char* name) {
    if (d.dtype != tok.dtype || d.device != tok.device) {
      fail(ErrorCode::DtypeMismatch, pre + name + " is " + d.describe() + " but the weights are " + tok.describe() +
                                         "; it must share their dtype and device");
    }
    if (d.shape != out_shape) {
      fail(ErrorCode::ShapeMismatch, pre + name + " must be " + shape_str(out_shape) +
                                         " (the output's shape), got " + d.describe());
    }
  };
  check_dy(d_last, "dLast");
  if (d_penult_p) check_dy(*d_penult_p, "dPenultimate");
  if (row_mask_p) {
    if (row_mask_p->dtype != DType::U8) {
      fail(ErrorCode::DtypeMismatch, pre + "rowMask must be u8 [vocab_size] (1 = the row gets a gradient), got " +
                                         row_mask_p->describe());
    }
    if (row_mask_p->shape != Shape{vocab}) {
      fail(ErrorCode::ShapeMismatch, pre + "rowMask must be [" + std::to_string(vocab) + "] (one flag per token), got " +
                                         row_mask_p->describe());
    }
    if (row_mask_p->device != tok.device) {
      fail(ErrorCode::DeviceMismatch, pre + "rowMask is " + row_mask_p->describe() + " but the weights are " +
                                          tok.describe());
    }
  }
  auto grads = std::make_shared<WeightGrads>();
  const std::vector<int64_t> trainable = attrs.get_ints(op, "trainable", {});
  grads->want_trainable(pre, n_weights, trainable);

  Launch launch;
  launch.queue = tok.device;
  launch.outputs.push_back(Tensor::empty(out_shape, tok.dtype, tok.device));
  if (d_penult_p) launch.outputs.push_back(Tensor::empty(out_shape, tok.dtype, tok.device));
  // Gradients get their final storage now (outputs exist before the graph runs); the graph copies into them.
  std::vector<Tensor> grad_out;
  for (int64_t t : trainable) {
    const Tensor& wt = t < 2 ? (t == 0 ? tok : weights->position_embedding) : *inputs[kFirstWeight + static_cast<size_t>(t)];
    grad_out.push_back(Tensor::empty(wt.shape, wt.dtype, wt.device));
    launch.outputs.push_back(grad_out.back());
  }
  launch.output = launch.outputs.front();
  for (const Tensor* t : inputs) {
    if (t) launch.inputs.push_back(*t);
  }
  Tensor last = launch.outputs[0];
  Tensor penult = d_penult_p ? launch.outputs[1] : Tensor();
  Tensor d_penult = d_penult_p ? *d_penult_p : Tensor();
  Tensor row_mask = row_mask_p ? *row_mask_p : Tensor();
  const bool has_penult = d_penult_p != nullptr, has_mask = row_mask_p != nullptr;
  launch.run = [config, weights, ids, vocab, last, penult, d_last, d_penult, row_mask, has_penult, has_mask, grads,
                trainable, grad_out]() mutable {
    models::clip_text_check_ids("clip_text_forward_backward", ids, vocab);
    models::ClipTextActivations acts =
        models::clip_text_forward(config, *weights, ids, last, has_penult ? &penult : nullptr);
    backward(config, *weights, acts, ids, d_last, has_penult ? &d_penult : nullptr, has_mask ? &row_mask : nullptr,
             *grads);
    grads->copy_out(trainable, grad_out);
    backend_for(last.device).synchronize();
    grads->release();
  };
  return launch;
}

}  // namespace

IMPRINT_REGISTER_OP(clip_text_forward_backward, clip_text_forward_backward);

}  // namespace ops
}  // namespace imprint
