// The VAE's forward graphs (see vae.h).
#include "models/vae.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/model_util.h"

namespace imprint {
namespace models {
namespace {

std::string prefix(const char* op) { return std::string(op) + ": "; }

// Hands out the op's inputs in order, checking each against its expected
// name and shape; the first input fixes the dtype and device of all.
class Taker {
 public:
  Taker(const char* op, const std::vector<Tensor>& inputs, size_t& next) : op_(op), inputs_(inputs), next_(next) {}

  Tensor take(const std::string& name, const Shape& shape) {
    if (next_ >= inputs_.size()) {
      fail(ErrorCode::InvalidArgument, prefix(op_) + "too few inputs: " + name + " (input " + std::to_string(next_) +
                                           ") is missing");
    }
    const Tensor& t = inputs_[next_++];
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16) {
      fail(ErrorCode::DtypeMismatch, prefix(op_) + name + " must be a float tensor, got " + t.describe());
    }
    if (!first_) first_ = &t;
    if (t.dtype != first_->dtype || t.device != first_->device) {
      fail(ErrorCode::DtypeMismatch, prefix(op_) + name + " is " + t.describe() + " but the first weight is " +
                                         first_->describe() + "; every weight must share one dtype and device");
    }
    if (t.shape != shape) {
      fail(ErrorCode::ShapeMismatch, prefix(op_) + name + " must be " + shape_str(shape) + ", got " + t.describe());
    }
    return t;
  }

  void pair(const std::string& name, const Shape& shape, Tensor& w, Tensor& b) {
    w = take(name + ".weight", shape);
    b = take(name + ".bias", {shape[0]});
  }

  VaeResnetWeights resnet(const std::string& p, int64_t cin, int64_t cout) {
    VaeResnetWeights r;
    pair(p + ".norm1", {cin}, r.norm1_w, r.norm1_b);
    pair(p + ".conv1", {cout, cin, 3, 3}, r.conv1_w, r.conv1_b);
    pair(p + ".norm2", {cout}, r.norm2_w, r.norm2_b);
    pair(p + ".conv2", {cout, cout, 3, 3}, r.conv2_w, r.conv2_b);
    if (cin != cout) pair(p + ".conv_shortcut", {cout, cin, 1, 1}, r.shortcut_w, r.shortcut_b);
    return r;
  }

  VaeMidWeights mid(const std::string& p, int64_t c) {
    VaeMidWeights m;
    m.resnet0 = resnet(p + ".resnets.0", c, c);
    const std::string a = p + ".attentions.0";
    pair(a + ".group_norm", {c}, m.attn.norm_w, m.attn.norm_b);
    pair(a + ".to_q", {c, c}, m.attn.q_w, m.attn.q_b);
    pair(a + ".to_k", {c, c}, m.attn.k_w, m.attn.k_b);
    pair(a + ".to_v", {c, c}, m.attn.v_w, m.attn.v_b);
    pair(a + ".to_out.0", {c, c}, m.attn.out_w, m.attn.out_b);
    m.resnet1 = resnet(p + ".resnets.1", c, c);
    return m;
  }

 private:
  const char* op_;
  const std::vector<Tensor>& inputs_;
  size_t& next_;
  const Tensor* first_ = nullptr;
};

ops::Attrs norm_attrs(const VaeConfig& c) {
  ops::Attrs a;
  a.numbers["groups"] = static_cast<double>(c.groups);
  a.numbers["eps"] = c.eps;
  return a;
}

VaeGroupNormActs group_norm(const VaeConfig& c, const Tensor& x, const Tensor& w, const Tensor& b) {
  std::vector<Tensor> r = run_op("group_norm_forward", {&x, &w, &b}, norm_attrs(c));
  return {x, r[1], r[2], r[0]};
}

// GroupNorm then SiLU in one kernel pass: fills the norm's activations (y kept
// for SiLU's backward) and returns silu(y).
Tensor group_norm_silu(const VaeConfig& c, const Tensor& x, const Tensor& w, const Tensor& b, VaeGroupNormActs& norm) {
  std::vector<Tensor> r = run_op("group_norm_silu_forward", {&x, &w, &b}, norm_attrs(c));
  norm = {x, r[2], r[3], r[1]};
  return r[0];
}

Tensor add(const Tensor& a, const Tensor& b) { return run_now(ops::binary(BinaryOp::Add, a, b)).front(); }

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) { return run_op("linear_forward", {&x, &w, &b}).front(); }

// padding as [top, bottom, left, right].
Tensor conv(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, std::vector<double> padding) {
  ops::Attrs a;
  a.numbers["stride"] = static_cast<double>(stride);
  a.lists["padding"] = std::move(padding);
  return run_op("conv2d_forward", {&x, &w, &b}, a).front();
}

Tensor conv3x3(const Tensor& x, const Tensor& w, const Tensor& b) { return conv(x, w, b, 1, {1, 1, 1, 1}); }
Tensor conv1x1(const Tensor& x, const Tensor& w, const Tensor& b) { return conv(x, w, b, 1, {0, 0, 0, 0}); }

// ResnetBlock2D (no time embedding, output scale 1).
Tensor resnet(const VaeConfig& c, const VaeResnetWeights& w, const Tensor& x, VaeResnetActs& a) {
  a.x = x;
  a.act1 = group_norm_silu(c, x, w.norm1_w, w.norm1_b, a.norm1);
  a.h1 = conv3x3(a.act1, w.conv1_w, w.conv1_b);
  a.act2 = group_norm_silu(c, a.h1, w.norm2_w, w.norm2_b, a.norm2);
  const Tensor h2 = conv3x3(a.act2, w.conv2_w, w.conv2_b);
  const Tensor skip = w.shortcut_w.storage ? conv1x1(x, w.shortcut_w, w.shortcut_b) : x;
  return add(skip, h2);
}

// Single-head self-attention over the H·W positions, with a residual.
Tensor attention(const VaeConfig& c, const VaeAttentionWeights& w, const Tensor& x, VaeAttentionActs& a) {
  const int64_t N = x.shape[0], C = x.shape[1], HW = x.shape[2] * x.shape[3];
  a.x = x;
  a.norm = group_norm(c, x, w.norm_w, w.norm_b);
  // [N, C, HW] → [N, HW, C]
  a.tokens = ops::reshape(swap_dims12(ops::reshape(a.norm.y, {N, C, HW, 1})), {N, HW, C});
  a.q = ops::reshape(linear(a.tokens, w.q_w, w.q_b), {N, 1, HW, C});
  a.k = ops::reshape(linear(a.tokens, w.k_w, w.k_b), {N, 1, HW, C});
  a.v = ops::reshape(linear(a.tokens, w.v_w, w.v_b), {N, 1, HW, C});
  ops::Attrs attrs;
  attrs.numbers["scale"] = 1.0 / std::sqrt(static_cast<double>(C));
  std::vector<Tensor> r = run_op("attention_forward", {&a.q, &a.k, &a.v}, attrs);
  a.o = r[0], a.lse = r[1];
  const Tensor out = linear(ops::reshape(a.o, {N, HW, C}), w.out_w, w.out_b);
  // [N, HW, C] → [N, C, H, W]
  const Tensor back = ops::reshape(swap_dims12(ops::reshape(out, {N, HW, C, 1})), x.shape);
  return add(x, back);
}

Tensor mid_block(const VaeConfig& c, const VaeMidWeights& w, const Tensor& x, VaeMidActs& a) {
  Tensor h = resnet(c, w.resnet0, x, a.resnet0);
  h = attention(c, w.attn, h, a.attn);
  return resnet(c, w.resnet1, h, a.resnet1);
}

// Downsample2D: pad right and bottom by one, then a stride-2 3x3 conv.
Tensor downsample(const Tensor& x, const Tensor& w, const Tensor& b) { return conv(x, w, b, 2, {0, 1, 0, 1}); }

// Copies `src` into the preallocated `dst` of the same byte size.
void copy_into(const Tensor& src, Tensor& dst) {
  backend_for(dst.device).copy_on_device(dst.data(), src.data(), dst.nbytes());
  backend_for(dst.device).synchronize();
}

}  // namespace

void vae_check_config(const char* op, const VaeConfig& c) {
  if (c.block_out_channels.empty() || c.block_out_channels.size() > 16) {
    fail(ErrorCode::InvalidArgument, prefix(op) + "blockOutChannels must list 1 to 16 widths, got " +
                                         std::to_string(c.block_out_channels.size()));
  }
  if (c.groups < 1) fail(ErrorCode::InvalidArgument, prefix(op) + "groups must be >= 1, got " + std::to_string(c.groups));
  for (int64_t ch : c.block_out_channels) {
    if (ch < 1 || ch % c.groups != 0) {
      fail(ErrorCode::InvalidArgument, prefix(op) + "every block width must be a positive multiple of groups " +
                                           std::to_string(c.groups) + ", got " + std::to_string(ch));
    }
  }
  if (c.in_channels < 1 || c.out_channels < 1 || c.latent_channels < 1 || c.layers_per_block < 1 ||
      c.layers_per_block > 64) {
    fail(ErrorCode::InvalidArgument, prefix(op) + "inChannels, outChannels, latentChannels must be >= 1 and "
                                                  "layersPerBlock 1 to 64");
  }
  if (!(c.eps > 0) || !std::isfinite(c.eps)) {
    fail(ErrorCode::InvalidArgument, prefix(op) + "eps must be a positive number, got " + std::to_string(c.eps));
  }
}

int64_t vae_factor(const VaeConfig& c) { return int64_t{1} << (c.block_out_channels.size() - 1); }

VaeEncoderWeights vae_take_encoder(const char* op, const VaeConfig& c, const std::vector<Tensor>& inputs, size_t& next) {
  Taker t(op, inputs, next);
  const std::vector<int64_t>& ch = c.block_out_channels;
  const size_t n = ch.size();
  const int64_t cm = ch.back(), lat2 = 2 * c.latent_channels;
  VaeEncoderWeights w;
  t.pair("encoder.conv_in", {ch[0], c.in_channels, 3, 3}, w.conv_in_w, w.conv_in_b);
  int64_t cin = ch[0];
  for (size_t i = 0; i < n; ++i) {
    const std::string p = "encoder.down_blocks." + std::to_string(i);
    VaeBlockWeights b;
    for (int64_t j = 0; j < c.layers_per_block; ++j) {
      b.resnets.push_back(t.resnet(p + ".resnets." + std::to_string(j), cin, ch[i]));
      cin = ch[i];
    }
    if (i + 1 < n) t.pair(p + ".downsamplers.0.conv", {ch[i], ch[i], 3, 3}, b.sample_w, b.sample_b);
    w.down.push_back(b);
  }
  w.mid = t.mid("encoder.mid_block", cm);
  t.pair("encoder.conv_norm_out", {cm}, w.norm_out_w, w.norm_out_b);
  t.pair("encoder.conv_out", {lat2, cm, 3, 3}, w.conv_out_w, w.conv_out_b);
  t.pair("quant_conv", {lat2, lat2, 1, 1}, w.quant_w, w.quant_b);
  return w;
}

VaeDecoderWeights vae_take_decoder(const char* op, const VaeConfig& c, const std::vector<Tensor>& inputs, size_t& next) {
  Taker t(op, inputs, next);
  std::vector<int64_t> rev(c.block_out_channels.rbegin(), c.block_out_channels.rend());
  const size_t n = rev.size();
  const int64_t lat = c.latent_channels;
  VaeDecoderWeights w;
  t.pair("post_quant_conv", {lat, lat, 1, 1}, w.post_quant_w, w.post_quant_b);
  t.pair("decoder.conv_in", {rev[0], lat, 3, 3}, w.conv_in_w, w.conv_in_b);
  w.mid = t.mid("decoder.mid_block", rev[0]);
  int64_t cin = rev[0];
  for (size_t i = 0; i < n; ++i) {
    const std::string p = "decoder.up_blocks." + std::to_string(i);
    VaeBlockWeights b;
    for (int64_t j = 0; j <= c.layers_per_block; ++j) {
      b.resnets.push_back(t.resnet(p + ".resnets." + std::to_string(j), cin, rev[i]));
      cin = rev[i];
    }
    if (i + 1 < n) t.pair(p + ".upsamplers.0.conv", {rev[i], rev[i], 3, 3}, b.sample_w, b.sample_b);
    w.up.push_back(b);
  }
  t.pair("decoder.conv_norm_out", {rev.back()}, w.norm_out_w, w.norm_out_b);
  t.pair("decoder.conv_out", {c.out_channels, rev.back(), 3, 3}, w.conv_out_w, w.conv_out_b);
  return w;
}

VaeEncoderActs vae_encode_forward(const VaeConfig& c, const VaeEncoderWeights& w, const Tensor& image, Tensor& mean,
                                  Tensor& logvar) {
  VaeEncoderActs a;
  a.image = image;
  Tensor x = conv3x3(image, w.conv_in_w, w.conv_in_b);
  for (const VaeBlockWeights& b : w.down) {
    VaeBlockActs ba;
    for (const VaeResnetWeights& r : b.resnets) {
      ba.resnets.emplace_back();
      x = resnet(c, r, x, ba.resnets.back());
    }
    if (b.sample_w.storage) {
      ba.sample_in = x;
      x = downsample(x, b.sample_w, b.sample_b);
    }
    a.down.push_back(std::move(ba));
  }
  x = mid_block(c, w.mid, x, a.mid);
  a.act_out = group_norm_silu(c, x, w.norm_out_w, w.norm_out_b, a.norm_out);
  a.moments = conv3x3(a.act_out, w.conv_out_w, w.conv_out_b);
  a.quant = conv1x1(a.moments, w.quant_w, w.quant_b);

  // Split [N, 2L, h, w] into mean and logvar: per sample, two contiguous halves.
  const int64_t N = a.quant.shape[0];
  const size_t half = mean.nbytes() / static_cast<size_t>(std::max<int64_t>(N, 1));
  Backend& be = backend_for(mean.device);
  const auto* src = static_cast<const char*>(a.quant.data());
  for (int64_t n = 0; n < N; ++n) {
    be.copy_on_device(static_cast<char*>(mean.data()) + n * half, src + 2 * n * half, half);
    be.copy_on_device(static_cast<char*>(logvar.data()) + n * half, src + (2 * n + 1) * half, half);
  }
  be.synchronize();
  // Clamp logvar to [-30, 20] as diffusers' DiagonalGaussianDistribution does,
  // in f32 on the host (the latent is small) so every dtype and device works.
  const size_t count = static_cast<size_t>(logvar.numel());
  Tensor host = logvar.device.is_cpu() ? logvar : run_now(ops::to_device(logvar, Device::cpu())).front();
  std::vector<float> vals(count);
  ops::to_host(host, DType::F32, vals.data());
  for (float& v : vals) v = std::min(20.0f, std::max(-30.0f, v));
  const Tensor clamped = ops::from_host(vals.data(), count * sizeof(float), logvar.shape, DType::F32, logvar.dtype);
  be.copy_from_host(logvar.data(), clamped.data(), logvar.nbytes());
  be.synchronize();
  return a;
}

VaeDecoderActs vae_decode_forward(const VaeConfig& c, const VaeDecoderWeights& w, const Tensor& latent,
                                  Tensor& image_out) {
  VaeDecoderActs a;
  a.latent = latent;
  a.z = conv1x1(latent, w.post_quant_w, w.post_quant_b);
  Tensor x = conv3x3(a.z, w.conv_in_w, w.conv_in_b);
  x = mid_block(c, w.mid, x, a.mid);
  for (const VaeBlockWeights& b : w.up) {
    VaeBlockActs ba;
    for (const VaeResnetWeights& r : b.resnets) {
      ba.resnets.emplace_back();
      x = resnet(c, r, x, ba.resnets.back());
    }
    if (b.sample_w.storage) {
      ba.sample_in = x;
      ba.upsampled = run_op("upsample_nearest2x_forward", {&x}).front();
      x = conv3x3(ba.upsampled, b.sample_w, b.sample_b);
    }
    a.up.push_back(std::move(ba));
  }
  a.act_out = group_norm_silu(c, x, w.norm_out_w, w.norm_out_b, a.norm_out);
  copy_into(conv3x3(a.act_out, w.conv_out_w, w.conv_out_b), image_out);
  return a;
}

}  // namespace models
}  // namespace imprint
