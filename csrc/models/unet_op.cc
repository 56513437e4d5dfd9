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
// Output: the noise prediction [N, out_channels, h, w].
//
// unet_forward_backward: the forward keeping its activations, then the
// backward of sum(out · dy) (models/unet_backward.h).
// Inputs: sample, timestep, encoder_hidden_states, 3 dy (out's shape), then
//   the weights as above. Attrs: as above, plus trainable: the indices (into
//   the weights, ascending) of the weights that get gradients; the rest are
//   frozen.
// Outputs: out, d_sample, d_encoder_hidden_states, then each trainable
//   weight's gradient in the order of `trainable`.
// With attr mseLoss = true, input 3 is a target instead of dy: the backward
//   is that of mean((out - target)²), whose value is the last output.
#include <cmath>
#include <memory>
#include <set>
#include <string>

#include "models/unet.h"
#include "models/model_util.h"
#include "models/unet_backward.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

// The op being planned (unet_forward or unet_forward_backward share the parsing), for error messages.
thread_local const char* kOp = "unet_forward";

std::string prefix() { return std::string(kOp) + ": "; }

// Takes the weights in order, checking each against its expected shape and
// the first weight's dtype and device; errors name the weight.
class WeightReader {
 public:
  WeightReader(const OpInputs& inputs, size_t first) : inputs_(inputs), next_(first) {}

  Tensor take(const std::string& name, const Shape& shape) {
    const Tensor t = take_any(name);
    if (t.shape != shape) {
      fail(ErrorCode::ShapeMismatch, prefix() + name + " must be " + shape_str(shape) + ", got " + t.describe());
    }
    return t;
  }

  Tensor take_any(const std::string& name) {
    if (next_ >= inputs_.size()) {
      fail(ErrorCode::InvalidArgument, prefix() + "too few inputs for this config: " + name + " (input " +
                                           std::to_string(next_) + ") is missing");
    }
    const Tensor& t = input(kOp, inputs_, next_, name.c_str());
    ++next_;
    if (!ref_) {
      if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16) {
        fail(ErrorCode::DtypeMismatch, prefix() + name + " must be a float tensor, got " + t.describe());
      }
      ref_ = std::make_unique<Tensor>(t);
    } else if (t.dtype != ref_->dtype || t.device != ref_->device) {
      fail(ErrorCode::DtypeMismatch, prefix() + name + " is " + t.describe() + " but conv_in.weight is " +
                                         ref_->describe() + "; every weight must share one dtype and device");
    }
    return t;
  }

  size_t used() const { return next_; }
  const Tensor& ref() const { return *ref_; }

 private:
  const OpInputs& inputs_;
  size_t next_;
  std::unique_ptr<Tensor> ref_;
};

struct Dims {
  int64_t temb, cross, groups;
};

void check_groups(const std::string& name, int64_t channels, int64_t groups) {
  if (channels % groups != 0) {
    fail(ErrorCode::InvalidArgument, prefix() + name + ": " + std::to_string(channels) +
                                         " channels are not divisible by groups " + std::to_string(groups));
  }
}

models::ResnetWeights read_resnet(WeightReader& r, const std::string& p, int64_t cin, int64_t cout, const Dims& d) {
  check_groups(p + ".norm1", cin, d.groups);
  check_groups(p + ".norm2", cout, d.groups);
  models::ResnetWeights w;
  w.norm1_w = r.take(p + ".norm1.weight", {cin});
  w.norm1_b = r.take(p + ".norm1.bias", {cin});
  w.conv1_w = r.take(p + ".conv1.weight", {cout, cin, 3, 3});
  w.conv1_b = r.take(p + ".conv1.bias", {cout});
  w.temb_w = r.take(p + ".time_emb_proj.weight", {cout, d.temb});
  w.temb_b = r.take(p + ".time_emb_proj.bias", {cout});
  w.norm2_w = r.take(p + ".norm2.weight", {cout});
  w.norm2_b = r.take(p + ".norm2.bias", {cout});
  w.conv2_w = r.take(p + ".conv2.weight", {cout, cout, 3, 3});
  w.conv2_b = r.take(p + ".conv2.bias", {cout});
  w.has_shortcut = cin != cout;
  if (w.has_shortcut) {
    w.shortcut_w = r.take(p + ".conv_shortcut.weight", {cout, cin, 1, 1});
    w.shortcut_b = r.take(p + ".conv_shortcut.bias", {cout});
  }
  return w;
}

// kv < 0: the key width is not known yet (cross_attention_dim, taken from the first to_k).
models::AttentionWeights read_attention(WeightReader& r, const std::string& p, int64_t c, int64_t& kv) {
  models::AttentionWeights w;
  w.q_w = r.take(p + ".to_q.weight", {c, c});
  if (kv < 0) {
    w.k_w = r.take_any(p + ".to_k.weight");
    if (w.k_w.ndim() != 2 || w.k_w.shape[0] != c || w.k_w.shape[1] < 1) {
      fail(ErrorCode::ShapeMismatch, prefix() + p + ".to_k.weight must be [" + std::to_string(c) +
                                         ", cross_attention_dim], got " + w.k_w.describe());
    }
    kv = w.k_w.shape[1];
  } else {
    w.k_w = r.take(p + ".to_k.weight", {c, kv});
  }
  w.v_w = r.take(p + ".to_v.weight", {c, kv});
  w.out_w = r.take(p + ".to_out.0.weight", {c, c});
  w.out_b = r.take(p + ".to_out.0.bias", {c});
  return w;
}

models::TransformerWeights read_transformer(WeightReader& r, const std::string& p, int64_t c, int64_t heads,
                                            int64_t depth, bool linear, Dims& d) {
  if (heads < 1 || c % heads != 0) {
    fail(ErrorCode::InvalidArgument, prefix() + p + ": heads must be >= 1 and divide its " + std::to_string(c) +
                                         " channels, got " + std::to_string(heads));
  }
  if (depth < 1 || depth > 64) {
    fail(ErrorCode::InvalidArgument, prefix() + p + ": transformer layers must be 1 to 64, got " + std::to_string(depth));
  }
  check_groups(p + ".norm", c, d.groups);
  const Shape proj = linear ? Shape{c, c} : Shape{c, c, 1, 1};
  models::TransformerWeights w;
  w.heads = heads;
  w.norm_w = r.take(p + ".norm.weight", {c});
  w.norm_b = r.take(p + ".norm.bias", {c});
  w.proj_in_w = r.take(p + ".proj_in.weight", proj);
  w.proj_in_b = r.take(p + ".proj_in.bias", {c});
  for (int64_t i = 0; i < depth; ++i) {
    const std::string b = p + ".transformer_blocks." + std::to_string(i);
    models::TransformerBlockWeights t;
    t.norm1_w = r.take(b + ".norm1.weight", {c});
    t.norm1_b = r.take(b + ".norm1.bias", {c});
    int64_t self_kv = c;
    t.attn1 = read_attention(r, b + ".attn1", c, self_kv);
    t.norm2_w = r.take(b + ".norm2.weight", {c});
    t.norm2_b = r.take(b + ".norm2.bias", {c});
    t.attn2 = read_attention(r, b + ".attn2", c, d.cross);
    t.norm3_w = r.take(b + ".norm3.weight", {c});
    t.norm3_b = r.take(b + ".norm3.bias", {c});
    t.ff1_w = r.take(b + ".ff.net.0.proj.weight", {8 * c, c});
    t.ff1_b = r.take(b + ".ff.net.0.proj.bias", {8 * c});
    t.ff2_w = r.take(b + ".ff.net.2.weight", {c, 4 * c});
    t.ff2_b = r.take(b + ".ff.net.2.bias", {c});
    w.blocks.push_back(t);
  }
  w.proj_out_w = r.take(p + ".proj_out.weight", proj);
  w.proj_out_b = r.take(p + ".proj_out.bias", {c});
  return w;
}

std::vector<int64_t> per_block(const Attrs& attrs, const char* name, size_t n) {
  std::vector<int64_t> v = attrs.get_ints(kOp, name);
  if (v.size() != n) {
    fail(ErrorCode::InvalidArgument, prefix() + name + " must list " + std::to_string(n) + " values (one per block), got " +
                                         std::to_string(v.size()));
  }
  return v;
}

struct Parsed {
  models::UNetConfig config;
  std::shared_ptr<models::UNetWeights> w;
  Tensor sample, timestep, context;
  Shape out_shape;
};

// Reads the attrs, the data inputs 0-2 and the weights from input `first` on, checking them all.
Parsed parse(const OpInputs& inputs, const Attrs& attrs, size_t first) {
  models::UNetConfig config;
  const std::vector<int64_t> ch = attrs.get_ints(kOp, "blockOutChannels");
  const size_t n = ch.size();
  if (n < 1 || n > 8) fail(ErrorCode::InvalidArgument, prefix() + "blockOutChannels must list 1 to 8 channel counts");
  for (int64_t c : ch) {
    if (c < 1 || c > (1 << 20)) fail(ErrorCode::InvalidArgument, prefix() + "blockOutChannels must be positive integers");
  }
  const int64_t L = attrs.get_int(kOp, "layersPerBlock");
  if (L < 1 || L > 64) fail(ErrorCode::InvalidArgument, prefix() + "layersPerBlock must be 1 to 64, got " + std::to_string(L));
  const std::vector<int64_t> cross_down = per_block(attrs, "crossDown", n);
  const std::vector<int64_t> cross_up = per_block(attrs, "crossUp", n);
  const std::vector<int64_t> heads = per_block(attrs, "heads", n);
  const std::vector<int64_t> depth = per_block(attrs, "transformerLayers", n);
  config.linear_projection = attrs.get_bool(kOp, "linearProjection", false);
  config.groups = attrs.get_int(kOp, "groups", 32);
  config.eps = attrs.get_number(kOp, "eps", 1e-5);
  config.flip_sin_to_cos = attrs.get_bool(kOp, "flipSinToCos", true);
  config.freq_shift = attrs.get_number(kOp, "freqShift", 0.0);
  if (config.groups < 1) fail(ErrorCode::InvalidArgument, prefix() + "groups must be >= 1");
  if (!(config.eps > 0) || !std::isfinite(config.eps)) {
    fail(ErrorCode::InvalidArgument, prefix() + "eps must be a positive number, got " + std::to_string(config.eps));
  }

  const Tensor& sample = input(kOp, inputs, 0, "sample");
  const Tensor& timestep = input(kOp, inputs, 1, "timestep");
  const Tensor& context = input(kOp, inputs, 2, "encoder_hidden_states");

  auto w = std::make_shared<models::UNetWeights>();
  WeightReader r(inputs, first);
  w->conv_in_w = r.take_any("conv_in.weight");
  const Tensor& ci = w->conv_in_w;
  if (ci.ndim() != 4 || ci.shape[0] != ch[0] || ci.shape[2] != ci.shape[3] || ci.shape[2] % 2 == 0) {
    fail(ErrorCode::ShapeMismatch, prefix() + "conv_in.weight must be [" + std::to_string(ch[0]) +
                                       ", in_channels, k, k] with k odd, got " + ci.describe());
  }
  w->conv_in_b = r.take("conv_in.bias", {ch[0]});
  w->time1_w = r.take_any("time_embedding.linear_1.weight");
  if (w->time1_w.ndim() != 2 || w->time1_w.shape[1] != ch[0] || w->time1_w.shape[0] < 1) {
    fail(ErrorCode::ShapeMismatch, prefix() + "time_embedding.linear_1.weight must be [time_embedding_dim, " +
                                       std::to_string(ch[0]) + "], got " + w->time1_w.describe());
  }
  Dims d{w->time1_w.shape[0], -1, config.groups};
  if (ch[0] % 2 != 0) fail(ErrorCode::InvalidArgument, prefix() + "blockOutChannels[0] must be even (the timestep embedding's width)");
  w->time1_b = r.take("time_embedding.linear_1.bias", {d.temb});
  w->time2_w = r.take("time_embedding.linear_2.weight", {d.temb, d.temb});
  w->time2_b = r.take("time_embedding.linear_2.bias", {d.temb});

  for (size_t i = 0; i < n; ++i) {
    const std::string p = "down_blocks." + std::to_string(i);
    models::UNetBlockWeights b;
    int64_t cin = i == 0 ? ch[0] : ch[i - 1];
    for (int64_t j = 0; j < L; ++j) {
      b.resnets.push_back(read_resnet(r, p + ".resnets." + std::to_string(j), cin, ch[i], d));
      if (cross_down[i]) {
        b.attentions.push_back(read_transformer(r, p + ".attentions." + std::to_string(j), ch[i], heads[i], depth[i],
                                                config.linear_projection, d));
      }
      cin = ch[i];
    }
    if (i + 1 < n) {
      b.has_resample = true;
      b.resample_w = r.take(p + ".downsamplers.0.conv.weight", {ch[i], ch[i], 3, 3});
      b.resample_b = r.take(p + ".downsamplers.0.conv.bias", {ch[i]});
    }
    w->down.push_back(std::move(b));
  }
  const int64_t cm = ch[n - 1];
  w->mid_res0 = read_resnet(r, "mid_block.resnets.0", cm, cm, d);
  w->mid_attn = read_transformer(r, "mid_block.attentions.0", cm, heads[n - 1], depth[n - 1], config.linear_projection, d);
  w->mid_res1 = read_resnet(r, "mid_block.resnets.1", cm, cm, d);
  // Up blocks mirror the down path: reversed channels, heads and depths.
  int64_t prev = cm;
  for (size_t i = 0; i < n; ++i) {
    const std::string p = "up_blocks." + std::to_string(i);
    const size_t k = n - 1 - i;
    const int64_t cout = ch[k], skip_in = ch[k == 0 ? 0 : k - 1];
    models::UNetBlockWeights b;
    for (int64_t j = 0; j <= L; ++j) {
      const int64_t skip = j == L ? skip_in : cout;
      const int64_t cin = j == 0 ? prev : cout;
      b.resnets.push_back(read_resnet(r, p + ".resnets." + std::to_string(j), cin + skip, cout, d));
      if (cross_up[i]) {
        b.attentions.push_back(read_transformer(r, p + ".attentions." + std::to_string(j), cout, heads[k], depth[k],
                                                config.linear_projection, d));
      }
    }
    if (i + 1 < n) {
      b.has_resample = true;
      b.resample_w = r.take(p + ".upsamplers.0.conv.weight", {cout, cout, 3, 3});
      b.resample_b = r.take(p + ".upsamplers.0.conv.bias", {cout});
    }
    w->up.push_back(std::move(b));
    prev = cout;
  }
  check_groups("conv_norm_out", ch[0], config.groups);
  w->norm_out_w = r.take("conv_norm_out.weight", {ch[0]});
  w->norm_out_b = r.take("conv_norm_out.bias", {ch[0]});
  w->conv_out_w = r.take_any("conv_out.weight");
  const Tensor& co = w->conv_out_w;
  if (co.ndim() != 4 || co.shape[1] != ch[0] || co.shape[2] != co.shape[3] || co.shape[2] % 2 == 0 || co.shape[0] < 1) {
    fail(ErrorCode::ShapeMismatch, prefix() + "conv_out.weight must be [out_channels, " + std::to_string(ch[0]) +
                                       ", k, k] with k odd, got " + co.describe());
  }
  w->conv_out_b = r.take("conv_out.bias", {co.shape[0]});
  if (r.used() != inputs.size()) {
    fail(ErrorCode::InvalidArgument, prefix() + "expected " + std::to_string(r.used()) + " inputs for this config, got " +
                                         std::to_string(inputs.size()));
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
  const int64_t cross = d.cross;
  if (context.ndim() != 3 || context.shape[0] != N || context.shape[1] < 1 || context.shape[2] != cross) {
    fail(ErrorCode::ShapeMismatch, prefix() + "encoder_hidden_states must be [" + std::to_string(N) + ", tokens, " +
                                       std::to_string(cross) + "] (batch as sample's, cross_attention_dim as the "
                                       "weights'), got " + context.describe());
  }

  return Parsed{config, w, sample, timestep, context, {N, co.shape[0], H, W}};
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
  const models::UNetConfig config = p.config;
  const Tensor s = p.sample, ts = p.timestep, ctx = p.context;
  launch.run = [config, w, s, ts, ctx, out]() mutable { models::unet_forward(config, *w, s, ts, ctx, out); };
  return launch;
}

void copy_into(Tensor& dst, const Tensor& src) {
  backend_for(dst.device).copy_on_device(dst.data(), src.data(), dst.nbytes());
}

Launch unet_forward_backward(const OpInputs& inputs, const Attrs& attrs) {
  kOp = "unet_forward_backward";
  const Parsed p = parse(inputs, attrs, 4);
  const Tensor& ref = p.sample;
  // With mseLoss, input 3 is the target and dy = d mean((out - target)²) / d out.
  const bool mse = attrs.get_bool(kOp, "mseLoss", false);
  const char* dy_name = mse ? "target" : "dy";
  const Tensor& dy = input(kOp, inputs, 3, dy_name);
  check_matches(kOp, ref, "sample", dy, dy_name);
  if (dy.shape != p.out_shape) {
    fail(ErrorCode::ShapeMismatch, prefix() + dy_name + " must have the output's shape " + shape_str(p.out_shape) +
                                       ", got " + dy.describe());
  }
  const std::vector<int64_t> idx = attrs.get_ints(kOp, "trainable", {});
  const int64_t count = static_cast<int64_t>(inputs.size()) - 4;
  std::set<const void*> trainable;
  std::vector<Tensor> grads;
  for (size_t i = 0; i < idx.size(); ++i) {
    if (idx[i] < 0 || idx[i] >= count || (i > 0 && idx[i] <= idx[i - 1])) {
      fail(ErrorCode::InvalidArgument, prefix() + "trainable must list ascending weight indices in [0, " +
                                           std::to_string(count) + "), got " + std::to_string(idx[i]) + " at position " +
                                           std::to_string(i));
    }
    const Tensor& t = *inputs[4 + static_cast<size_t>(idx[i])];
    if (!trainable.insert(t.data()).second) {
      fail(ErrorCode::InvalidArgument, prefix() + "weight " + std::to_string(idx[i]) +
                                           " shares its storage with another trainable weight");
    }
    grads.push_back(Tensor::empty(t.shape, t.dtype, t.device));
  }

  Launch launch;
  launch.queue = ref.device;
  launch.output = Tensor::empty(p.out_shape, ref.dtype, ref.device);
  launch.outputs = {launch.output, Tensor::empty(ref.shape, ref.dtype, ref.device),
                    Tensor::empty(p.context.shape, ref.dtype, ref.device)};
  for (const Tensor& g : grads) launch.outputs.push_back(g);
  if (mse) launch.outputs.push_back(Tensor::empty({}, ref.dtype, ref.device));  // the loss, last
  for (const Tensor* t : inputs) launch.inputs.push_back(*t);
  std::vector<const void*> order;
  for (int64_t i : idx) order.push_back(inputs[4 + static_cast<size_t>(i)]->data());
  const auto w = p.w;
  const models::UNetConfig config = p.config;
  const Tensor s = p.sample, ts = p.timestep, ctx = p.context, d = dy;
  std::vector<Tensor> outs = launch.outputs;
  launch.run = [config, w, s, ts, ctx, d, trainable, order, outs, mse]() mutable {
    Tensor out = outs[0];
    const models::UNetActivations acts = models::unet_forward(config, *w, s, ts, ctx, out);
    Tensor dy = d;
    if (mse) {
      copy_into(outs.back(), models::run_op("mse_loss_forward", {&out, &d}).front());
      dy = models::run_op("mse_loss_backward", {&out, &d}).front();
    }
    const models::UNetGrads g = models::unet_backward(config, *w, acts, s, ctx, dy, trainable);
    copy_into(outs[1], g.d_sample);
    if (g.d_context.data()) {
      copy_into(outs[2], g.d_context);
    } else {  // no transformer: the context does not reach the output
      const std::vector<char> zeros(outs[2].nbytes(), 0);  // all-zero bits are 0.0 in every float dtype
      backend_for(s.device).copy_from_host(outs[2].data(), zeros.data(), zeros.size());
    }
    for (size_t i = 0; i < order.size(); ++i) copy_into(outs[3 + i], g.weights.at(order[i]));
    backend_for(s.device).synchronize();
  };
  return launch;
}

}  // namespace

IMPRINT_REGISTER_OP(unet_forward, unet_forward);
IMPRINT_REGISTER_OP(unet_forward_backward, unet_forward_backward);

}  // namespace ops
}  // namespace imprint
