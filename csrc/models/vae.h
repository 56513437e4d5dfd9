// The Stable Diffusion VAE (diffusers' AutoencoderKL) as explicit forward
// graphs over the registered kernels:
//   encode: conv_in → DownEncoderBlock2D × n (resnets, Downsample2D but the last)
//           → mid block (resnet, self-attention, resnet) → GroupNorm → SiLU
//           → conv_out → quant_conv → mean, logvar (clamped to [-30, 20])
//   decode: post_quant_conv → conv_in → mid block → UpDecoderBlock2D × n
//           (resnets, Upsample2D but the last) → GroupNorm → SiLU → conv_out
// The scaling factor is not applied here (pipelines do that).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace imprint {
namespace models {

struct VaeConfig {
  int64_t in_channels = 3, out_channels = 3, latent_channels = 4;
  std::vector<int64_t> block_out_channels;  // per down block; the decoder runs them reversed
  int64_t layers_per_block = 1;
  int64_t groups = 32;
  double eps = 1e-6;  // diffusers' AutoencoderKL hard-codes 1e-6 in every norm
};

// ResnetBlock2D without a time embedding. shortcut_* are empty when the
// channels do not change (identity residual).
struct VaeResnetWeights {
  Tensor norm1_w, norm1_b, conv1_w, conv1_b, norm2_w, norm2_b, conv2_w, conv2_b;
  Tensor shortcut_w, shortcut_b;
};

// The mid block's single-head self-attention over the H·W positions.
struct VaeAttentionWeights {
  Tensor norm_w, norm_b;  // group_norm [C]
  Tensor q_w, q_b, k_w, k_b, v_w, v_b, out_w, out_b;  // to_q, to_k, to_v, to_out.0 [C, C], [C]
};

struct VaeMidWeights {
  VaeResnetWeights resnet0;
  VaeAttentionWeights attn;
  VaeResnetWeights resnet1;
};

struct VaeBlockWeights {
  std::vector<VaeResnetWeights> resnets;
  Tensor sample_w, sample_b;  // downsamplers.0.conv / upsamplers.0.conv; empty in the last block
};

struct VaeEncoderWeights {
  Tensor conv_in_w, conv_in_b;
  std::vector<VaeBlockWeights> down;
  VaeMidWeights mid;
  Tensor norm_out_w, norm_out_b, conv_out_w, conv_out_b;
  Tensor quant_w, quant_b;  // quant_conv [2L, 2L, 1, 1]
};

struct VaeDecoderWeights {
  Tensor post_quant_w, post_quant_b;  // post_quant_conv [L, L, 1, 1]
  Tensor conv_in_w, conv_in_b;
  VaeMidWeights mid;
  std::vector<VaeBlockWeights> up;
  Tensor norm_out_w, norm_out_b, conv_out_w, conv_out_b;
};

// What a backward pass will need (kept now; the backward is a later step).
struct VaeGroupNormActs {
  Tensor x, mean, rstd;  // the norm's input and its per-group stats
  Tensor y;              // its output (the SiLU's input)
};

struct VaeResnetActs {
  Tensor x;          // block input (residual, norm1 and shortcut input)
  VaeGroupNormActs norm1;
  Tensor act1;       // silu(norm1) (conv1's input)
  Tensor h1;         // conv1 output (norm2's input)
  VaeGroupNormActs norm2;
  Tensor act2;       // silu(norm2) (conv2's input)
};

struct VaeAttentionActs {
  Tensor x;              // input [N, C, H, W] (residual)
  VaeGroupNormActs norm;
  Tensor tokens;         // normed input as [N, HW, C] (the q/k/v projections' input)
  Tensor q, k, v;        // [N, 1, HW, C]
  Tensor o, lse;         // attention output [N, 1, HW, C] and its log-sum-exp
};

struct VaeMidActs {
  VaeResnetActs resnet0;
  VaeAttentionActs attn;
  VaeResnetActs resnet1;
};

struct VaeBlockActs {
  std::vector<VaeResnetActs> resnets;
  Tensor sample_in;  // the resampler's input (before its conv; padded/upsampled inside)
  Tensor upsampled;  // decoder only: nearest 2x of sample_in (the conv's input)
};

struct VaeEncoderActs {
  Tensor image;  // conv_in's input
  std::vector<VaeBlockActs> down;
  VaeMidActs mid;
  VaeGroupNormActs norm_out;
  Tensor act_out;  // silu(norm_out) (conv_out's input)
  Tensor moments;  // conv_out output (quant_conv's input)
  Tensor quant;    // quant_conv output [N, 2L, h, w], logvar unclamped
};

struct VaeDecoderActs {
  Tensor latent;  // post_quant_conv's input
  Tensor z;       // post_quant_conv output (conv_in's input)
  VaeMidActs mid;
  std::vector<VaeBlockActs> up;
  VaeGroupNormActs norm_out;
  Tensor act_out;  // conv_out's input
};

// Fills weights from `inputs` in the op's documented order (see vae_op.cc:
// the order of the layout's names), checking each one's shape, dtype and
// device against the config and naming it by its diffusers name. `next` is
// advanced past the consumed inputs.
VaeEncoderWeights vae_take_encoder(const char* op, const VaeConfig& c, const std::vector<Tensor>& inputs, size_t& next);
VaeDecoderWeights vae_take_decoder(const char* op, const VaeConfig& c, const std::vector<Tensor>& inputs, size_t& next);
// Checks the config's numbers (channels, groups dividing every width, eps).
void vae_check_config(const char* op, const VaeConfig& c);
// Total spatial downsampling: 2^(blocks - 1).
int64_t vae_factor(const VaeConfig& c);

// Run on the caller's thread (the device queue). `mean` and `logvar` are
// preallocated [N, L, H/f, W/f]; `image_out` is preallocated [N, out, h·f, w·f].
VaeEncoderActs vae_encode_forward(const VaeConfig& c, const VaeEncoderWeights& w, const Tensor& image, Tensor& mean,
                                  Tensor& logvar);
VaeDecoderActs vae_decode_forward(const VaeConfig& c, const VaeDecoderWeights& w, const Tensor& latent,
                                  Tensor& image_out);

}  // namespace models
}  // namespace imprint
