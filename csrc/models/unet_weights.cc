// Reading the UNet's weights from an op's inputs (see unet_weights.h).
#include "models/unet_weights.h"

#include <cmath>
#include <memory>
#include <string>

#include "ops/op_util.h"

namespace imprint {
namespace models {
namespace {

using ops::Attrs;
using ops::OpInputs;
using ops::input;

// The op being planned, for error messages.
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
    names_.push_back(name);
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
  const std::vector<std::string>& names() const { return names_; }

 private:
  const OpInputs& inputs_;
  size_t next_;
  std::vector<std::string> names_;
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

ResnetWeights read_resnet(WeightReader& r, const std::string& p, int64_t cin, int64_t cout, const Dims& d) {
  check_groups(p + ".norm1", cin, d.groups);
  check_groups(p + ".norm2", cout, d.groups);
  ResnetWeights w;
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
AttentionWeights read_attention(WeightReader& r, const std::string& p, int64_t c, int64_t& kv) {
  AttentionWeights w;
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

TransformerWeights read_transformer(WeightReader& r, const std::string& p, int64_t c, int64_t heads,
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
  TransformerWeights w;
  w.heads = heads;
  w.norm_w = r.take(p + ".norm.weight", {c});
  w.norm_b = r.take(p + ".norm.bias", {c});
  w.proj_in_w = r.take(p + ".proj_in.weight", proj);
  w.proj_in_b = r.take(p + ".proj_in.bias", {c});
  for (int64_t i = 0; i < depth; ++i) {
    const std::string b = p + ".transformer_blocks." + std::to_string(i);
    TransformerBlockWeights t;
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

}  // namespace

UNetWeightSet read_unet_weights(const char* op, const OpInputs& inputs, const Attrs& attrs, size_t first) {
  kOp = op;
  UNetConfig config;
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


  auto w = std::make_shared<UNetWeights>();
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
    UNetBlockWeights b;
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
    UNetBlockWeights b;
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
  UNetWeightSet out;
  out.config = config;
  out.w = w;
  out.names = r.names();
  out.used = r.used();
  out.cross = d.cross;
  return out;
}

}  // namespace models
}  // namespace imprint
