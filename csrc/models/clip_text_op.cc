// clip_text_forward: the CLIP text encoder (models/clip_text.h) as one op of
// the registry, so JavaScript runs it through nnOp.
// Inputs, in order:
//   0 input_ids i32|i64 [B, T]
//   1 token_embedding.weight [V, H]   2 position_embedding.weight [P, H]
//   then per layer (16 each): layer_norm1.weight, layer_norm1.bias,
//     self_attn.q_proj.weight, .bias, k_proj.weight, .bias, v_proj.weight, .bias,
//     out_proj.weight, .bias, layer_norm2.weight, layer_norm2.bias,
//     mlp.fc1.weight, .bias, mlp.fc2.weight, .bias
//   last: final_layer_norm.weight, final_layer_norm.bias
// Attrs: layers, heads, eps = 1e-5, quickGelu = true (false: erf GELU),
//   penultimate = false.
// Outputs: last_hidden_state [B, T, H], then (penultimate) the final layer
//   norm of the last layer's input [B, T, H].
#include <memory>
#include <string>

#include "models/clip_text.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {


Launch clip_text_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "clip_text_forward";
  models::ClipTextConfig config;
  config.layers = attrs.get_int(op, "layers");
  config.heads = attrs.get_int(op, "heads");
  config.eps = attrs.get_number(op, "eps", 1e-5);
  config.quick_gelu = attrs.get_bool(op, "quickGelu", true);
  const bool penultimate = attrs.get_bool(op, "penultimate", false);
  if (config.layers < 1 || config.layers > 1024) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": layers must be 1 to 1024, got " + std::to_string(config.layers));
  }
  const size_t expected = 1 + models::clip_text_weight_count(config.layers);
  if (inputs.size() != expected) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": expected " + std::to_string(expected) + " inputs for " +
                                         std::to_string(config.layers) + " layers (input_ids, 2 embeddings, 16 per layer, "
                                         "2 for the final layer norm), got " + std::to_string(inputs.size()));
  }
  auto in = [&](size_t i) { return input(op, inputs, i, ("input " + std::to_string(i)).c_str()); };
  const Tensor ids = in(0);
  auto weights = std::make_shared<models::ClipTextWeights>(
      models::clip_text_weights_from_inputs(op, inputs, 1, config.layers));
  models::clip_text_check(op, config, *weights, ids);

  const int64_t B = ids.shape[0], T = ids.shape[1], H = weights->token_embedding.shape[1];
  const int64_t vocab = weights->token_embedding.shape[0];
  const Tensor& tok = weights->token_embedding;
  Launch launch;
  launch.queue = tok.device;
  launch.outputs.push_back(Tensor::empty({B, T, H}, tok.dtype, tok.device));
  if (penultimate) launch.outputs.push_back(Tensor::empty({B, T, H}, tok.dtype, tok.device));
  launch.output = launch.outputs.front();
  for (const Tensor* t : inputs) launch.inputs.push_back(*t);
  Tensor last = launch.outputs[0];
  Tensor penult = penultimate ? launch.outputs[1] : Tensor();
  launch.run = [config, weights, ids, vocab, last, penult, penultimate]() mutable {
    // ids are data: checked here, on the queue, once they are certainly computed.
    models::clip_text_check_ids("clip_text_forward", ids, vocab);
    models::clip_text_forward(config, *weights, ids, last, penultimate ? &penult : nullptr);
  };
  return launch;
}

}  // namespace

IMPRINT_REGISTER_OP(clip_text_forward, clip_text_forward);

}  // namespace ops
}  // namespace imprint
