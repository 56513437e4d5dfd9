// unet_forward: diffusers' UNet2DConditionModel (models/unet.h) as one op of
// the registry, so JavaScript runs it through nnOp.
// Inputs, in order:
//   0 sample [N, in_channels, h, w] (h, w ≥ 1; sides that are not multiples of 2^(blocks-1)
//     are handled as diffusers' forward_upsample_size does)
//   1 timestep [N] or [1] (or []), the weights' float dtype
//   2 encoder_hidden_states [N, T, cross_attention_dim]
//   then every weight in the order of lib/models/layout-unet.ts (unetLayout):
//     conv_in.{weight,bias}, time_embedding.linear_1/linear_2.{weight,bias};
//     per down block i, per layer j: resnets.j (norm1, conv1, time_emb_proj,
//       norm2, conv2, [conv_shortcut] — weight then bias each), then for
//       CrossAttnDownBlock2D attentions.j (norm, proj_in, per transformer
//       block: norm1, attn1.to_q/to_k/to_v.weight, attn1.to_out.0.{weight,bias},
//       norm2, attn2.(same), norm3, ff.net.0.proj, ff.net.2; then proj_out);
//       then downsamplers.0.conv except in the last block;
//     mid_block.resnets.0, mid_block.attentions.0, mid_block.resnets.1;
//     per up block: layers_per_block + 1 layers as above, upsamplers.0.conv
//       except in the last block;
//     conv_norm_out.{weight,bias}, conv_out.{weight,bias}.
// Attrs: blockOutChannels (list), layersPerBlock, crossDown / crossUp (lists
//   of 0/1 per block: Cross-attention block or not), heads (list per down
//   block), transformerLayers (list per down block), linearProjection = false,
//   groups = 32, eps = 1e-5, flipSinToCos = true, freqShift = 0.
// Output: the noise prediction [N, out_channels, h, w]; with the focus
//   probe (focusTokens, focusQueries) its maps next; with encoderFeatures =
//   true (unet_forward only) each down block's output (after its downsample)
//   and the mid block's last, the UNet encoder's features.
//
// Attention adapters (models/unet_adapters.h), on both ops: attr `adapters`,
//   a flat list of records [weightIndex, kind, ...] for attention projection
//   weights (attn1/attn2 to_q, to_k, to_v, to_out.0.weight): kind 1 delta
//   (1 input, W's shape), kind 2 LoRA [weightIndex, 2, scale] (2 inputs: A
//   [r, in], B [out, r]), kind 3 mask (1 u8 input, W's shape, 1 = shut, 0 =
//   open; other values are not checked here), kind 4 per-sample LoRA
//   [weightIndex, 4, scale] (2 inputs: down [N, r, in], up [N, out, r]). The
//   adapter inputs follow the weights in record order. At most one record of
//   each kind per weight. Attr dualAlpha (in [0, 1]): the dual path; one more
//   input after the adapter inputs, the hard context (encoder_hidden_states'
//   shape). The kinds, their execution paths and gradients: unet_adapters.h.
//
// unet_forward_backward: the forward keeping its activations, then the
// backward of sum(out · dy) (models/unet_backward.h).
// Inputs: sample, timestep, encoder_hidden_states, 3 dy (out's shape), then
//   the weights as above, then the adapter inputs. Attrs: as above, plus
//   trainable: the indices (ascending) of the weights that get gradients, the
//   rest being frozen; indices from the weight count on address the adapter
//   inputs in order (masks are not trainable); checkpoint = false: keep only
//   each layer's input and recompute its activations in the backward.
// Outputs: out, d_sample, d_encoder_hidden_states, then each trainable
//   weight's or adapter input's gradient in the order of `trainable`.
// With attr mseLoss = true, input 3 is a target instead of dy: the backward
//   is that of mean((out - target)²), whose value is the last output. With
//   lossMask = true as well, one more input comes LAST (after any adapter
//   inputs): a mask [N, 1 or out_channels, h, w], and the loss is
//   sum((out - target)² · mask) / sum(mask broadcast to out's shape).
// Attr detachFirstToken = true: every cross-attention's key/value at context
//   position 0 (start of text) pass no gradient (to to_k/to_v or the context).
//
// The attention probe (Attend-and-Excite, models/unet.h's TokenFocus), on both
//   ops: attrs focusTokens (1–77 context positions) and focusQueries (the
//   query count of the cross-attentions to read: h·w of their latent grid).
//   unet_forward then has a second output, the mean over those layers of
//   attention_token_map_forward: maps f32 [N, tokens, focusQueries].
//   unet_forward_backward takes one more input, LAST (after the loss mask):
//   dFocus f32 [N, tokens, focusQueries], the gradient of that mean map, which
//   its backward adds to the layers' q and k (so d_sample carries it).
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include "core/args/attn.h"
#include "models/unet.h"
#include "models/model_util.h"
#include "models/unet_adapters.h"
#include "models/unet_backward.h"
#include "models/unet_weights.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

// The op being planned (unet_forward or unet_forward_backward share the parsing), for error messages.
thread_local const char* kOp = "unet_forward";

std::string prefix() { return std::string(kOp) + ": "; }

// What read_unet_weights found, under the names the checks below use.
struct WeightsUsed {
  const models::UNetWeightSet& ws;
  size_t used() const { return ws.used; }
  const Tensor& ref() const { return ws.w->conv_in_w; }
  const std::vector<std::string>& names() const { return ws.names; }
};

struct Parsed {
  models::UNetConfig config;
  std::shared_ptr<models::UNetWeights> w;
  Tensor sample, timestep, context;
  Shape out_shape;
  size_t first = 0, count = 0;  // the weights are inputs [first, first + count)
  models::AdapterSet adapters;  // and the adapter inputs follow them
};

// The probe of focusTokens/focusQueries, or null when the attrs are absent.
std::shared_ptr<models::TokenFocus> parse_focus(const Attrs& attrs, int64_t context_tokens) {
  const bool has_tokens = attrs.lists.count("focusTokens") > 0, has_queries = attrs.numbers.count("focusQueries") > 0;
  if (!has_tokens && !has_queries) return nullptr;
  if (!has_tokens || !has_queries) fail(ErrorCode::InvalidArgument, prefix() + "focusTokens and focusQueries go together");
  auto focus = std::make_shared<models::TokenFocus>();
  const std::vector<int64_t> tokens = attrs.get_ints(kOp, "focusTokens");
  if (tokens.empty() || tokens.size() > static_cast<size_t>(kTokenMapMaxTokens)) {
    fail(ErrorCode::InvalidArgument, prefix() + "focusTokens must list 1 to " + std::to_string(kTokenMapMaxTokens) +
                                         " context positions, got " + std::to_string(tokens.size()));
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= context_tokens) {
      fail(ErrorCode::InvalidArgument, prefix() + "focusTokens[" + std::to_string(i) + "] = " + std::to_string(tokens[i]) +
                                           " is not a position of the " + std::to_string(context_tokens) + "-token context");
    }
    focus->tokens.push_back(static_cast<double>(tokens[i]));
  }
  focus->queries = attrs.get_int(kOp, "focusQueries");
  if (focus->queries < 1) fail(ErrorCode::InvalidArgument, prefix() + "focusQueries must be ≥ 1, got " + std::to_string(focus->queries));
  return focus;
}

// After the forward: the probe read at least one layer.
void check_focus_read(const models::TokenFocus& f) {
  if (f.layers == 0) {
    fail(ErrorCode::InvalidArgument, prefix() + "no cross-attention has focusQueries = " + std::to_string(f.queries) +
                                         " query positions (a cross-attention over an h×w latent grid has h·w)");
  }
}

// Reads the attrs, the data inputs 0-2 and the weights from input `first` on, checking them all.
Parsed parse(const OpInputs& inputs, const Attrs& attrs, size_t first) {
  const Tensor& sample = input(kOp, inputs, 0, "sample");
  const Tensor& timestep = input(kOp, inputs, 1, "timestep");
  const Tensor& context = input(kOp, inputs, 2, "encoder_hidden_states");
  const models::UNetWeightSet ws = models::read_unet_weights(kOp, inputs, attrs, first);
  const Tensor& ci = ws.w->conv_in_w;
  const Tensor& co = ws.w->conv_out_w;
  WeightsUsed r{ws};
  Parsed parsed;
  parsed.first = first;
  parsed.count = r.used() - first;
  const int64_t batch = sample.ndim() >= 1 ? sample.shape[0] : 0;
  parsed.adapters = models::parse_adapters(prefix(), inputs, attrs, first, r.names(), r.used(), batch);
  if (parsed.adapters.next != inputs.size()) {
    fail(ErrorCode::InvalidArgument, prefix() + "expected " + std::to_string(parsed.adapters.next) + " inputs for this config" +
                                         (attrs.lists.count("adapters") || parsed.adapters.dual() ? " and these adapters" : "") +
                                         ", got " + std::to_string(inputs.size()));
  }

  // The data inputs, against the weights.
  const Tensor& ref = r.ref();
  check_matches(kOp, ref, "conv_in.weight", sample, "sample");
  if (sample.ndim() != 4 || sample.shape[1] != ci.shape[1]) {
    fail(ErrorCode::ShapeMismatch, prefix() + "sample must be [N, " + std::to_string(ci.shape[1]) +
                                       ", h, w] (conv_in's in_channels), got " + sample.describe());
  }
  const int64_t N = sample.shape[0], H = sample.shape[2], W = sample.shape[3];
  // Any size: odd sides after a downsampler are matched by resizing the upsampler's input to the skip's size.
  if (N < 1 || H < 1 || W < 1) {
    fail(ErrorCode::ShapeMismatch, prefix() + "sample's batch, height and width must be positive, got " + sample.describe());
  }
  check_matches(kOp, ref, "conv_in.weight", timestep, "timestep");
  const bool t_ok = timestep.ndim() == 0 || (timestep.ndim() == 1 && (timestep.shape[0] == N || timestep.shape[0] == 1));
  if (!t_ok) {
    fail(ErrorCode::ShapeMismatch, prefix() + "timestep must be [" + std::to_string(N) + "], [1] or a scalar, got " +
                                       timestep.describe());
  }
  check_matches(kOp, ref, "conv_in.weight", context, "encoder_hidden_states");
  const int64_t cross = ws.cross;
  if (context.ndim() != 3 || context.shape[0] != N || context.shape[1] < 1 || context.shape[2] != cross) {
    fail(ErrorCode::ShapeMismatch, prefix() + "encoder_hidden_states must be [" + std::to_string(N) + ", tokens, " +
                                       std::to_string(cross) + "] (batch as sample's, cross_attention_dim as the "
                                       "weights'), got " + context.describe());
  }

  if (parsed.adapters.dual()) {
    const Tensor& hard = parsed.adapters.context_hard;
    check_matches(kOp, ref, "conv_in.weight", hard, "context_hard");
    if (hard.shape != context.shape) {
      fail(ErrorCode::ShapeMismatch, prefix() + "context_hard (the dual path's) must have encoder_hidden_states' shape " +
                                         shape_str(context.shape) + ", got " + hard.describe());
    }
  }

  parsed.config = ws.config;
  parsed.config.focus = parse_focus(attrs, context.shape[1]);
  parsed.w = ws.w;
  parsed.sample = sample, parsed.timestep = timestep, parsed.context = context;
  parsed.out_shape = {N, co.shape[0], H, W};
  return parsed;
}

// The adapters with the weights they adapt, as the graph's run needs them.
struct Adapted {
  models::AdapterSet set;
  std::vector<Tensor> originals;  // originals[i]: the weight set.adapters[i] adapts

  Adapted(const Parsed& p, const OpInputs& inputs) : set(p.adapters) {
    for (const models::AttentionAdapter& a : set.adapters) originals.push_back(*inputs[p.first + a.weight]);
  }

  // On the device queue: the run's weights (effective[i] for adapters[i]).
  models::UNetWeights materialise(const models::UNetWeights& w, std::vector<Tensor>& effective) const {
    return models::adapted_weights(w, set, originals, effective);
  }
};

void copy_into(Tensor& dst, const Tensor& src) {
  backend_for(dst.device).copy_on_device(dst.data(), src.data(), dst.nbytes());
}

Launch unet_forward(const OpInputs& inputs, const Attrs& attrs) {
  kOp = "unet_forward";
  const Parsed p = parse(inputs, attrs, 3);
  const Tensor& ref = p.sample;
  Launch launch;
  launch.queue = ref.device;
  launch.output = Tensor::empty(p.out_shape, ref.dtype, ref.device);
  launch.outputs.push_back(launch.output);
  for (const Tensor* t : inputs) launch.inputs.push_back(*t);
  Tensor out = launch.output;
  const auto w = p.w;
  models::UNetConfig config = p.config;
  Tensor maps;
  if (config.focus) {
    maps = Tensor::empty({p.sample.shape[0], static_cast<int64_t>(config.focus->tokens.size()), config.focus->queries},
                         DType::F32, ref.device);
    launch.outputs.push_back(maps);
  }
  // encoderFeatures: each down block's output, then the mid block's, after the prediction (and maps).
  std::vector<Tensor> features;
  if (attrs.get_bool(kOp, "encoderFeatures", false)) {
    int64_t h = ref.shape[2], wd = ref.shape[3], ch = 0;
    for (const models::UNetBlockWeights& b : w->down) {
      ch = b.resnets.back().conv2_w.shape[0];
      if (b.has_resample) h = (h - 1) / 2 + 1, wd = (wd - 1) / 2 + 1;  // 3×3, stride 2, padding 1
      features.push_back(Tensor::empty({ref.shape[0], ch, h, wd}, ref.dtype, ref.device));
    }
    features.push_back(Tensor::empty({ref.shape[0], w->mid_res1.conv2_w.shape[0], h, wd}, ref.dtype, ref.device));
    for (const Tensor& f : features) launch.outputs.push_back(f);
    config.features = std::make_shared<std::vector<Tensor>>();
  }
  const Tensor s = p.sample, ts = p.timestep, ctx = p.context;
  const auto adapted = std::make_shared<Adapted>(p, inputs);
  launch.run = [config, w, s, ts, ctx, out, maps, features, adapted]() mutable {
    std::vector<Tensor> effective;
    const models::UNetWeights run_w = adapted->materialise(*w, effective);
    if (config.features) config.features->clear();
    models::unet_forward(config, run_w, s, ts, ctx, out);  // inference: keeps no activations
    if (config.features) {
      for (size_t i = 0; i < features.size(); ++i) copy_into(features[i], (*config.features)[i]);
      config.features->clear();
      backend_for(s.device).synchronize();
    }
    if (config.focus) {
      check_focus_read(*config.focus);
      copy_into(maps, models::scaled(config.focus->sum, 1.0 / static_cast<double>(config.focus->layers)));
      backend_for(s.device).synchronize();
    }
  };
  return launch;
}

// Where one trainable entry's gradient comes from.
struct GradSource {
  const void* weight = nullptr;  // a plain weight: its gradient from the backward
  int adapter = -1;              // else adapters[adapter]: the adapted weight itself (`own`) or one of its inputs
  bool own = false;
  models::AdapterPart part = models::AdapterPart::Delta;
};

Launch unet_forward_backward(const OpInputs& all_inputs, const Attrs& attrs) {
  kOp = "unet_forward_backward";
  // With mseLoss, input 3 is the target and dy = d mean((out - target)²) / d out;
  // with lossMask too, the last input is a mask broadcast to out's shape and
  // the loss is sum((out - target)² · mask) / sum(mask broadcast).
  const bool mse = attrs.get_bool(kOp, "mseLoss", false);
  const bool loss_mask = attrs.get_bool(kOp, "lossMask", false);
  if (loss_mask && !mse) fail(ErrorCode::InvalidArgument, prefix() + "lossMask needs mseLoss = true");
  OpInputs inputs = all_inputs;
  // The probe's gradient comes last of all (its attrs are read again by parse).
  const Tensor* d_focus = nullptr;
  if (attrs.lists.count("focusTokens")) {
    if (inputs.size() < 5) fail(ErrorCode::InvalidArgument, prefix() + "focusTokens: dFocus (the last input) is missing");
    d_focus = &input(kOp, inputs, inputs.size() - 1, "dFocus");
    inputs.pop_back();
  }
  const Tensor* mask = nullptr;
  if (loss_mask) {
    if (inputs.size() < 5) fail(ErrorCode::InvalidArgument, prefix() + "lossMask: the mask (the last input) is missing");
    mask = &input(kOp, inputs, inputs.size() - 1, "mask");
    inputs.pop_back();
  }
  const bool detach_first = attrs.get_bool(kOp, "detachFirstToken", false);
  const Parsed p = parse(inputs, attrs, 4);
  const Tensor& ref = p.sample;
  const char* dy_name = mse ? "target" : "dy";
  const Tensor& dy = input(kOp, inputs, 3, dy_name);
  check_matches(kOp, ref, "sample", dy, dy_name);
  if (dy.shape != p.out_shape) {
    fail(ErrorCode::ShapeMismatch, prefix() + dy_name + " must have the output's shape " + shape_str(p.out_shape) +
                                       ", got " + dy.describe());
  }
  Tensor mask_t;
  if (mask) {
    check_matches(kOp, ref, "sample", *mask, "mask");
    const int lead = static_cast<int>(p.out_shape.size()) - mask->ndim();
    bool fits = lead == 0;
    for (int i = 0; fits && i < mask->ndim(); ++i) fits = mask->shape[i] == 1 || mask->shape[i] == p.out_shape[i];
    if (!fits || mask->shape[0] != p.out_shape[0] || mask->shape[2] != p.out_shape[2] || mask->shape[3] != p.out_shape[3]) {
      fail(ErrorCode::ShapeMismatch, prefix() + "mask must be [" + std::to_string(p.out_shape[0]) + ", 1 or " +
                                         std::to_string(p.out_shape[1]) + ", " + std::to_string(p.out_shape[2]) + ", " +
                                         std::to_string(p.out_shape[3]) + "] (the output's batch and size), got " +
                                         mask->describe());
    }
    mask_t = *mask;
  }
  Tensor d_focus_t;
  if (d_focus) {
    const models::TokenFocus& f = *p.config.focus;
    check_device(kOp, ref, "sample", *d_focus, "dFocus");
    if (d_focus->dtype != DType::F32) fail(ErrorCode::DtypeMismatch, prefix() + "dFocus must be f32 (as the maps), got " + d_focus->describe());
    check_shape(kOp, *d_focus, "dFocus", {p.out_shape[0], static_cast<int64_t>(f.tokens.size()), f.queries});
    d_focus_t = *d_focus;
  }
  const bool checkpoint = attrs.get_bool(kOp, "checkpoint", false);
  const std::vector<int64_t> idx = attrs.get_ints(kOp, "trainable", {});
  const int64_t count = static_cast<int64_t>(p.count);
  const models::AdapterSet& ad = p.adapters;
  const int64_t total = count + static_cast<int64_t>(ad.inputs.size());
  std::map<size_t, int> adapter_of;  // weight index → its adapter
  for (size_t i = 0; i < ad.adapters.size(); ++i) adapter_of[ad.adapters[i].weight] = static_cast<int>(i);
  std::set<const void*> seen;
  std::vector<Tensor> grads;
  std::vector<GradSource> sources;
  for (size_t i = 0; i < idx.size(); ++i) {
    if (idx[i] < 0 || idx[i] >= total || (i > 0 && idx[i] <= idx[i - 1])) {
      fail(ErrorCode::InvalidArgument, prefix() + "trainable must list ascending weight indices in [0, " +
                                           std::to_string(total) + "), got " + std::to_string(idx[i]) + " at position " +
                                           std::to_string(i) +
                                           (ad.inputs.empty() ? "" : " (indices from " + std::to_string(count) +
                                                                                " address the adapter inputs)"));
    }
    const size_t at = p.first + static_cast<size_t>(idx[i]);
    const Tensor& t = *inputs[at];
    GradSource src;
    if (idx[i] < count) {
      auto a = adapter_of.find(static_cast<size_t>(idx[i]));
      if (a == adapter_of.end()) src.weight = t.data();
      else src.adapter = a->second, src.own = true;
    } else {
      const models::AdapterInput& ai = ad.inputs[static_cast<size_t>(idx[i] - count)];
      if (ai.part == models::AdapterPart::Mask) {
        fail(ErrorCode::InvalidArgument, prefix() + "trainable index " + std::to_string(idx[i]) + " is the mask of weight " +
                                             std::to_string(ad.adapters[ai.adapter].weight) + " (" +
                                             ad.adapters[ai.adapter].name + "); masks are not trainable");
      }
      src.adapter = static_cast<int>(ai.adapter);
      src.part = ai.part;
    }
    if (!seen.insert(t.data()).second) {
      fail(ErrorCode::InvalidArgument, prefix() + "weight " + std::to_string(idx[i]) +
                                           " shares its storage with another trainable weight");
    }
    sources.push_back(src);
    grads.push_back(Tensor::empty(t.shape, t.dtype, t.device));
  }

  Launch launch;
  launch.queue = ref.device;
  launch.output = Tensor::empty(p.out_shape, ref.dtype, ref.device);
  launch.outputs = {launch.output, Tensor::empty(ref.shape, ref.dtype, ref.device),
                    Tensor::empty(p.context.shape, ref.dtype, ref.device)};
  for (const Tensor& g : grads) launch.outputs.push_back(g);
  if (mse) launch.outputs.push_back(Tensor::empty({}, ref.dtype, ref.device));  // the loss, last
  for (const Tensor* t : all_inputs) launch.inputs.push_back(*t);
  const auto w = p.w;
  const models::UNetConfig config = p.config;
  const Tensor s = p.sample, ts = p.timestep, ctx = p.context, d = dy;
  const auto adapted = std::make_shared<Adapted>(p, inputs);
  std::vector<Tensor> outs = launch.outputs;
  launch.run = [config, w, s, ts, ctx, d, sources, outs, adapted, checkpoint, mse, mask_t, detach_first, d_focus_t]() mutable {
    std::vector<Tensor> effective;
    const models::UNetWeights run_w = adapted->materialise(*w, effective);
    // The backward sees W_eff in place of each materialised weight: it trains
    // when the weight or any of its delta/LoRA parameters does. On a dual
    // path the plain pass uses the original W as well, and per-sample LoRA
    // factors get their gradients under their own storage.
    std::set<const void*> trainable;
    for (const GradSource& g : sources) {
      if (g.adapter < 0) {
        trainable.insert(g.weight);
        continue;
      }
      const models::AttentionAdapter& a = adapted->set.adapters[g.adapter];
      if (g.own) trainable.insert(adapted->originals[g.adapter].data());
      if (g.own || g.part == models::AdapterPart::Delta || g.part == models::AdapterPart::LoraA || g.part == models::AdapterPart::LoraB) {
        trainable.insert(effective[g.adapter].data());
      } else {
        trainable.insert(g.part == models::AdapterPart::SampleDown ? a.sample_down.data() : a.sample_up.data());
      }
    }
    Tensor out = outs[0];
    models::UNetGrads g;
    {
      models::UNetActivations acts;
      acts.checkpointed = checkpoint;
      models::unet_forward(config, run_w, s, ts, ctx, out, &acts);
      if (config.focus) {
        // Read once; a checkpointed backward reruns layers without adding to the sum.
        check_focus_read(*config.focus);
        config.focus->collect = false;
        config.focus->d_mean = d_focus_t;
      }
      Tensor dy = d;
      if (mse) {
        ops::OpInputs loss_in = {&out, &d};
        if (mask_t.data()) loss_in.push_back(&mask_t);
        copy_into(outs.back(), models::run_op("mse_loss_forward", loss_in).front());
        dy = models::run_op("mse_loss_backward", loss_in).front();
      }
      g = models::unet_backward(config, run_w, acts, s, ctx, dy, trainable, detach_first);
    }
    copy_into(outs[1], g.d_sample);
    if (g.d_context.data()) {
      copy_into(outs[2], g.d_context);
    } else {  // no transformer: the context does not reach the output
      const std::vector<char> zeros(outs[2].nbytes(), 0);  // all-zero bits are 0.0 in every float dtype
      backend_for(s.device).copy_from_host(outs[2].data(), zeros.data(), zeros.size());
    }
    std::map<int, Tensor> masked;  // per adapter: dW' = dW_eff ⊙ (1 - m)
    for (size_t i = 0; i < sources.size(); ++i) {
      const GradSource& src = sources[i];
      if (src.adapter < 0) {
        copy_into(outs[3 + i], g.weights.at(src.weight));
        continue;
      }
      const models::AttentionAdapter& a = adapted->set.adapters[src.adapter];
      if (!src.own && (src.part == models::AdapterPart::SampleDown || src.part == models::AdapterPart::SampleUp)) {
        copy_into(outs[3 + i], g.weights.at(src.part == models::AdapterPart::SampleDown ? a.sample_down.data() : a.sample_up.data()));
        continue;
      }
      const Tensor& eff = effective[src.adapter];
      if (!masked.count(src.adapter)) masked[src.adapter] = models::masked_gradient(g.weights.at(eff.data()), a);
      const Tensor& dm = masked[src.adapter];
      if (src.own) {
        // W itself: through W_eff, plus the dual path's plain pass where W_eff is a separate tensor.
        const void* orig = adapted->originals[src.adapter].data();
        auto plain = g.weights.find(orig);
        const bool separate = eff.data() != orig && plain != g.weights.end();
        copy_into(outs[3 + i], separate ? models::run_now(ops::binary(BinaryOp::Add, dm, plain->second)).front() : dm);
        continue;
      }
      copy_into(outs[3 + i], src.part == models::AdapterPart::LoraA ? models::lora_a_gradient(dm, a)
                             : src.part == models::AdapterPart::LoraB ? models::lora_b_gradient(dm, a) : dm);
    }
    backend_for(s.device).synchronize();
  };
  return launch;
}

}  // namespace

IMPRINT_REGISTER_OP(unet_forward, unet_forward);
IMPRINT_REGISTER_OP(unet_forward_backward, unet_forward_backward);

}  // namespace ops
}  // namespace imprint
