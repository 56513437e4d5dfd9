// Parity cases for the CUDA GEMM paths (cuda/gemm*.cu, cuda/matmul.cu) and the
// layers built on them: linear (cuda/linear.cu) and conv2d (cuda/conv.cu).
// Shapes follow Stable Diffusion where it is cheap (channels 320/640/1280,
// 77 text tokens, 768-wide text features, im2col depth 9·320 = 2880), plus odd
// sizes that end inside every tile (1, 77, 129, 7x9 images).
//
// The fallback kernels (tensor-core WMMA, SIMT) run when cuBLAS is absent; the
// gemm_fallback_* cases set IMPRINT_CUBLAS=0 while they run, so every run
// checks them too (and IMPRINT_CUBLAS=0 imprint_parity gemm runs all cases so).
#include <cmath>
#include <cstdlib>
#include <string>

#include "ops/ops.h"
#include "parity.h"

namespace imprint {
namespace parity {
namespace {

// Sets an environment variable for its lifetime and then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (value.empty()) return;
    active_ = true;
    if (const char* old = std::getenv(name)) {
      had_old_ = true;
      old_ = old;
    }
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (!active_) return;
    if (had_old_) setenv(name_, old_.c_str(), 1);
    else unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  bool active_ = false, had_old_ = false;
  std::string old_;
};

// Tolerance for outputs that each sum `terms` products of unit-normal values
// (every input here is N(0, 1)), so an output's typical size is √terms.
//  - f32: both devices accumulate in f32 in different orders; each partial sum
//    (size ≈ √terms) is rounded at ≈ 6e-8 relative, and over `terms` additions
//    that random walk stays well below 1e-6·terms in absolute error.
//  - f16/bf16: both devices accumulate in f32 and round the output once, so
//    rtol covers a one-ulp difference in the stored value; the absolute part
//    covers outputs that cancel to near zero, where what differs is the f32
//    accumulation (tensor cores align products to the largest exponent and
//    drop low bits) of terms whose size grows like √terms: hence atol ∝ √terms
//    (k = 2880 gets ≈ 0.1 on values of typical size 54).
Tolerance sum_tolerance(DType dtype, int64_t terms) {
  const double t = static_cast<double>(std::max<int64_t>(1, terms));
  switch (dtype) {
    case DType::F32: return {1e-4, std::max(1e-5, 1e-6 * t)};
    case DType::F16: return {1e-2, std::max(1e-3, 2e-3 * std::sqrt(t))};
    default: return {2e-2, std::max(1e-2, 2e-3 * std::sqrt(t))};
  }
}

// Runs an nn op as JavaScript would. The CPU op library computes in f32 only,
// so there half inputs are widened (exactly), the op runs in f32 and each
// output is rounded back to the input dtype: the CUDA kernels' own recipe
// (f32 accumulation, one rounding at the end).
Tensors run_float_op(const std::string& op, const std::vector<const Tensor*>& inputs, const ops::Attrs& attrs) {
  const Tensor& first = *inputs[0];
  if (!first.device.is_cpu() || first.dtype == DType::F32) return run_op(op, inputs, attrs);
  std::vector<Tensor> widened;
  widened.reserve(inputs.size());
  ops::OpInputs f32_inputs;
  for (const Tensor* t : inputs) {
    if (t == nullptr) {
      f32_inputs.push_back(nullptr);
      continue;
    }
    widened.push_back(run_launch(ops::cast(*t, DType::F32)));
    f32_inputs.push_back(&widened.back());
  }
  Tensors outs = run_op(op, f32_inputs, attrs);
  for (Tensor& out : outs) out = run_launch(ops::cast(out, first.dtype));
  return outs;
}

// --- matmul (Backend::matmul → gemm(); SIMT for broadcast batch layouts) ------

// a [batch..., m, k] (or [.., k, m] when ta) times b [k, n] (or [n, k] when tb),
// with each operand's own batch shape (empty: a plain matrix, broadcast).
// `without_cublas`: run with IMPRINT_CUBLAS=0 (Imprint's own kernels).
ParityCase matmul_case(DType dtype, bool ta, bool tb, int64_t m, int64_t n, int64_t k, Shape a_batch = {},
                       Shape b_batch = {}, bool without_cublas = false) {
  ParityCase c;
  Shape a = a_batch, b = b_batch;
  for (int64_t d : ta ? Shape{k, m} : Shape{m, k}) a.push_back(d);
  for (int64_t d : tb ? Shape{n, k} : Shape{k, n}) b.push_back(d);
  c.inputs = {normal(a, dtype), normal(b, dtype)};
  c.run = [ta, tb, without_cublas](const Tensors& in) {
    ScopedEnv cublas("IMPRINT_CUBLAS", without_cublas ? "0" : "");
    return Tensors{run_launch(ops::matmul(in[0], in[1], ta, tb))};
  };
  c.tolerances = {sum_tolerance(dtype, k)};
  return c;
}

}  // namespace

// SD attention/FF projections: 2·4096 latent tokens of 320 channels.
IMPRINT_PARITY_CASE(gemm_matmul_sd_proj_bf16) { return matmul_case(DType::BF16, false, false, 8192, 320, 320); }
IMPRINT_PARITY_CASE(gemm_matmul_sd_proj_batched_f16) {
  return matmul_case(DType::F16, false, false, 4096, 320, 320, {2});  // b shared by the batch: stride 0
}
IMPRINT_PARITY_CASE(gemm_matmul_sd_proj_f32) { return matmul_case(DType::F32, false, false, 4096, 320, 320); }
// Cross-attention K/V: 77 text tokens of 768 features through W [320, 768].
IMPRINT_PARITY_CASE(gemm_matmul_text_kv_f32) { return matmul_case(DType::F32, false, true, 77, 320, 768); }
IMPRINT_PARITY_CASE(gemm_matmul_text_kv_bf16) { return matmul_case(DType::BF16, false, true, 77, 320, 768); }
IMPRINT_PARITY_CASE(gemm_matmul_text_kv_f16) { return matmul_case(DType::F16, false, true, 77, 320, 768, {2}, {2}); }
// Odd sizes that end inside every tile, and each transpose combination.
IMPRINT_PARITY_CASE(gemm_matmul_odd_tn_f32) { return matmul_case(DType::F32, true, false, 129, 77, 65, {3}, {3}); }
IMPRINT_PARITY_CASE(gemm_matmul_odd_tn_bf16) { return matmul_case(DType::BF16, true, false, 129, 77, 65, {3}, {3}); }
IMPRINT_PARITY_CASE(gemm_matmul_odd_tt_f16) { return matmul_case(DType::F16, true, true, 77, 129, 33, {2}, {2}); }
IMPRINT_PARITY_CASE(gemm_matmul_odd_tt_bf16) { return matmul_case(DType::BF16, true, true, 1, 129, 77); }
IMPRINT_PARITY_CASE(gemm_matmul_odd_nt_f32) { return matmul_case(DType::F32, false, true, 129, 1, 77, {2}); }
IMPRINT_PARITY_CASE(gemm_matmul_k1_bf16) { return matmul_case(DType::BF16, false, false, 77, 129, 1); }
IMPRINT_PARITY_CASE(gemm_matmul_vector_f16) { return matmul_case(DType::F16, false, false, 1, 320, 1280); }
// Attention scores at head dims 40/80/160: [heads·batch, 77 | 4096, d] · [.., 77, d]ᵀ.
IMPRINT_PARITY_CASE(gemm_matmul_scores_d40_bf16) { return matmul_case(DType::BF16, false, true, 1024, 77, 40, {16}, {16}); }
IMPRINT_PARITY_CASE(gemm_matmul_scores_d80_f16) { return matmul_case(DType::F16, false, true, 256, 77, 80, {8}, {8}); }
IMPRINT_PARITY_CASE(gemm_matmul_scores_d160_f32) { return matmul_case(DType::F32, false, true, 64, 77, 160, {8}, {8}); }
// The im2col depth of a 3x3 conv over 320 channels.
IMPRINT_PARITY_CASE(gemm_matmul_k2880_bf16) { return matmul_case(DType::BF16, false, false, 320, 256, 2880); }
IMPRINT_PARITY_CASE(gemm_matmul_k2880_f32) { return matmul_case(DType::F32, false, false, 320, 256, 2880); }
// Broadcast batches that no single stride describes ([2, 1] against [1, 3]): the SIMT kernel.
IMPRINT_PARITY_CASE(gemm_matmul_broadcast_f32) { return matmul_case(DType::F32, false, false, 33, 40, 17, {2, 1}, {1, 3}); }
IMPRINT_PARITY_CASE(gemm_matmul_broadcast_bf16) { return matmul_case(DType::BF16, false, true, 65, 9, 130, {2, 1}, {1, 3}); }

// The same through Imprint's kernels: tensor-core WMMA for f16/bf16 (edge
// tiles in m, n and k, both transposes, 16-byte and scalar staging), SIMT for f32.
IMPRINT_PARITY_CASE(gemm_fallback_matmul_sd_proj_bf16) {
  return matmul_case(DType::BF16, false, false, 8192, 320, 320, {}, {}, true);
}
IMPRINT_PARITY_CASE(gemm_fallback_matmul_odd_nn_f16) {
  return matmul_case(DType::F16, false, false, 129, 77, 65, {3}, {3}, true);
}
IMPRINT_PARITY_CASE(gemm_fallback_matmul_odd_tn_bf16) {
  return matmul_case(DType::BF16, true, false, 129, 77, 65, {3}, {3}, true);
}
IMPRINT_PARITY_CASE(gemm_fallback_matmul_odd_nt_f16) {
  return matmul_case(DType::F16, false, true, 200, 136, 72, {2}, {}, true);
}
IMPRINT_PARITY_CASE(gemm_fallback_matmul_odd_tt_bf16) {
  return matmul_case(DType::BF16, true, true, 77, 129, 33, {2}, {2}, true);
}
IMPRINT_PARITY_CASE(gemm_fallback_matmul_k2880_bf16) {
  return matmul_case(DType::BF16, false, false, 320, 256, 2880, {}, {}, true);
}
IMPRINT_PARITY_CASE(gemm_fallback_matmul_vector_bf16) {
  return matmul_case(DType::BF16, false, false, 1, 320, 1280, {}, {}, true);
}
IMPRINT_PARITY_CASE(gemm_fallback_matmul_text_kv_f32) {
  return matmul_case(DType::F32, false, true, 77, 320, 768, {}, {}, true);
}

// --- linear -------------------------------------------------------------------

namespace {

// linear_forward(x [rows..., in], weight [out, in], bias? [out]).
ParityCase linear_forward_case(DType dtype, Shape x_shape, int64_t out, bool bias) {
  ParityCase c;
  const int64_t in = x_shape.back();
  c.inputs = {normal(x_shape, dtype), normal({out, in}, dtype)};
  if (bias) c.inputs.push_back(normal({out}, dtype));
  c.run = [bias](const Tensors& in) {
    return run_float_op("linear_forward", {&in[0], &in[1], bias ? &in[2] : nullptr}, {});
  };
  c.tolerances = {sum_tolerance(dtype, in + 1)};
  return c;
}

// linear_backward(dy, x, weight; weightGrad, biasGrad) → dx, dweight?, dbias?.
ParityCase linear_backward_case(DType dtype, Shape x_shape, int64_t out, bool weight_grad, bool bias_grad,
                                bool without_cublas = false) {
  ParityCase c;
  const int64_t in = x_shape.back();
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < x_shape.size(); ++d) rows *= x_shape[d];
  Shape dy_shape = x_shape;
  dy_shape.back() = out;
  c.inputs = {normal(dy_shape, dtype), normal(x_shape, dtype), normal({out, in}, dtype)};
  c.run = [weight_grad, bias_grad, without_cublas](const Tensors& in) {
    ScopedEnv cublas("IMPRINT_CUBLAS", without_cublas ? "0" : "");
    return run_float_op("linear_backward", {&in[0], &in[1], &in[2]},
                        attrs({{"weightGrad", weight_grad ? 1 : 0}, {"biasGrad", bias_grad ? 1 : 0}}));
  };
  c.tolerances = {sum_tolerance(dtype, out)};
  if (weight_grad) c.tolerances.push_back(sum_tolerance(dtype, rows));
  if (bias_grad) c.tolerances.push_back(sum_tolerance(dtype, rows));
  return c;
}

}  // namespace

IMPRINT_PARITY_CASE(gemm_linear_fwd_text_kv_bias_f32) { return linear_forward_case(DType::F32, {2, 77, 768}, 320, true); }
IMPRINT_PARITY_CASE(gemm_linear_fwd_text_kv_bias_bf16) { return linear_forward_case(DType::BF16, {2, 77, 768}, 320, true); }
IMPRINT_PARITY_CASE(gemm_linear_fwd_text_kv_f16) { return linear_forward_case(DType::F16, {2, 77, 768}, 640, false); }
IMPRINT_PARITY_CASE(gemm_linear_fwd_ff_bf16) { return linear_forward_case(DType::BF16, {2, 1024, 320}, 1280, false); }
IMPRINT_PARITY_CASE(gemm_linear_fwd_ff_bias_f16) { return linear_forward_case(DType::F16, {1, 256, 1280}, 320, true); }
IMPRINT_PARITY_CASE(gemm_linear_fwd_odd_bias_f32) { return linear_forward_case(DType::F32, {3, 5, 129}, 65, true); }
IMPRINT_PARITY_CASE(gemm_linear_fwd_one_row_bf16) { return linear_forward_case(DType::BF16, {1, 1280}, 320, true); }
IMPRINT_PARITY_CASE(gemm_linear_fwd_empty_in_bias_f32) { return linear_forward_case(DType::F32, {4, 0}, 8, true); }

IMPRINT_PARITY_CASE(gemm_linear_bwd_all_f32) { return linear_backward_case(DType::F32, {2, 77, 768}, 320, true, true); }
IMPRINT_PARITY_CASE(gemm_linear_bwd_all_bf16) { return linear_backward_case(DType::BF16, {2, 256, 320}, 640, true, true); }
IMPRINT_PARITY_CASE(gemm_linear_bwd_all_f16) { return linear_backward_case(DType::F16, {3, 5, 129}, 65, true, true); }
IMPRINT_PARITY_CASE(gemm_linear_bwd_dx_only_bf16) { return linear_backward_case(DType::BF16, {77, 768}, 320, false, false); }
IMPRINT_PARITY_CASE(gemm_linear_bwd_weight_f32) { return linear_backward_case(DType::F32, {129, 40}, 77, true, false); }
IMPRINT_PARITY_CASE(gemm_linear_bwd_bias_f16) { return linear_backward_case(DType::F16, {64, 320}, 1280, false, true); }
IMPRINT_PARITY_CASE(gemm_fallback_linear_bwd_all_bf16) {
  return linear_backward_case(DType::BF16, {2, 77, 320}, 640, true, true, true);
}
IMPRINT_PARITY_CASE(gemm_linear_bwd_zero_rows_f32) { return linear_backward_case(DType::F32, {0, 16}, 8, true, true); }

// --- linear + low-rank modulation (cuda/linear_lowrank.cu) ---------------------

namespace {

// linear_lowrank_forward(x [samples, T, in], weight, down, up, bias?; scale) and
// its backward (dy, x, weight, down, up, u; every gradient). `per_sample`:
// down [samples, r, in] and up [samples, out, r].
ParityCase linear_lowrank_case(DType dtype, int64_t samples, int64_t T, int64_t in, int64_t out, int64_t r,
                               bool per_sample, bool backward) {
  ParityCase c;
  const Shape down_shape = per_sample ? Shape{samples, r, in} : Shape{r, in};
  const Shape up_shape = per_sample ? Shape{samples, out, r} : Shape{out, r};
  c.inputs = {normal({samples, T, in}, dtype), normal({out, in}, dtype, 0, 0.05), normal(down_shape, dtype, 0, 0.1),
              normal(up_shape, dtype, 0, 0.1), normal({out}, dtype), normal({samples, T, out}, dtype)};
  const ops::Attrs scale = attrs({{"scale", 0.8}});
  c.run = [backward, scale](const Tensors& in) {
    Tensors fwd = run_float_op("linear_lowrank_forward", {&in[0], &in[1], &in[2], &in[3], &in[4]}, scale);
    if (!backward) return fwd;
    ops::Attrs all = attrs({{"scale", 0.8}, {"weightGrad", 1}, {"biasGrad", 1}});
    return run_float_op("linear_lowrank_backward", {&in[5], &in[0], &in[1], &in[2], &in[3], &fwd[1]}, all);
  };
  const int64_t rows = per_sample ? T : samples * T;
  if (backward) {
    c.tolerances = {sum_tolerance(dtype, out + r), sum_tolerance(dtype, rows + out), sum_tolerance(dtype, rows),
                    sum_tolerance(dtype, samples * T), sum_tolerance(dtype, samples * T)};
  } else {
    c.tolerances = {sum_tolerance(dtype, in + r), sum_tolerance(dtype, in)};
  }
  return c;
}

}  // namespace

// SD's attention projections: the text K/V (77 × 768 → 320) and a 64×64 query map.
IMPRINT_PARITY_CASE(gemm_lowrank_fwd_text_kv_f32) { return linear_lowrank_case(DType::F32, 2, 77, 768, 320, 4, false, false); }
IMPRINT_PARITY_CASE(gemm_lowrank_fwd_query_bf16) { return linear_lowrank_case(DType::BF16, 2, 4096, 320, 320, 16, false, false); }
IMPRINT_PARITY_CASE(gemm_lowrank_fwd_per_sample_f16) { return linear_lowrank_case(DType::F16, 4, 256, 640, 640, 8, true, false); }
IMPRINT_PARITY_CASE(gemm_lowrank_bwd_text_kv_f32) { return linear_lowrank_case(DType::F32, 2, 77, 768, 320, 4, false, true); }
IMPRINT_PARITY_CASE(gemm_lowrank_bwd_query_bf16) { return linear_lowrank_case(DType::BF16, 2, 1024, 320, 320, 16, false, true); }
IMPRINT_PARITY_CASE(gemm_lowrank_bwd_per_sample_bf16) { return linear_lowrank_case(DType::BF16, 3, 77, 768, 320, 4, true, true); }
IMPRINT_PARITY_CASE(gemm_lowrank_bwd_odd_f32) { return linear_lowrank_case(DType::F32, 3, 5, 129, 65, 3, true, true); }

// --- conv2d -------------------------------------------------------------------

namespace {

struct ConvSpec {
  Shape x;                   // [N, Cin, H, W]
  int64_t cout, kh, kw;
  int64_t stride;
  std::vector<double> padding;  // [top, bottom, left, right]
  // IMPRINT_CONV_SCRATCH_BYTES while the case runs ("" leaves it alone): a
  // tiny im2col budget sends cuda/conv.cu through its image chunks and row
  // tiles at small shapes. The CPU kernels ignore it.
  std::string scratch_bytes = "";
  bool without_cublas = false;  // run with IMPRINT_CUBLAS=0 (Imprint's own GEMM kernels)
};


ops::Attrs conv_attrs(const ConvSpec& s) { return attrs({{"stride", static_cast<double>(s.stride)}}, {{"padding", s.padding}}); }

int64_t conv_out(int64_t size, int64_t k, int64_t stride, double pad_a, double pad_b) {
  return (size + static_cast<int64_t>(pad_a + pad_b) - k) / stride + 1;
}

ParityCase conv_forward_case(DType dtype, const ConvSpec& s, bool bias) {
  ParityCase c;
  c.inputs = {normal(s.x, dtype), normal({s.cout, s.x[1], s.kh, s.kw}, dtype)};
  if (bias) c.inputs.push_back(normal({s.cout}, dtype));
  c.run = [s, bias](const Tensors& in) {
    ScopedEnv budget("IMPRINT_CONV_SCRATCH_BYTES", s.scratch_bytes);
    ScopedEnv cublas("IMPRINT_CUBLAS", s.without_cublas ? "0" : "");
    return run_float_op("conv2d_forward", {&in[0], &in[1], bias ? &in[2] : nullptr}, conv_attrs(s));
  };
  c.tolerances = {sum_tolerance(dtype, s.x[1] * s.kh * s.kw + 1)};
  return c;
}

ParityCase conv_backward_case(DType dtype, const ConvSpec& s, bool weight_grad, bool bias_grad, bool input_grad = true) {
  ParityCase c;
  const int64_t ho = conv_out(s.x[2], s.kh, s.stride, s.padding[0], s.padding[1]);
  const int64_t wo = conv_out(s.x[3], s.kw, s.stride, s.padding[2], s.padding[3]);
  c.inputs = {normal({s.x[0], s.cout, ho, wo}, dtype), normal(s.x, dtype), normal({s.cout, s.x[1], s.kh, s.kw}, dtype)};
  ops::Attrs a = conv_attrs(s);
  a.numbers["inputGrad"] = input_grad ? 1 : 0;
  a.numbers["weightGrad"] = weight_grad ? 1 : 0;
  a.numbers["biasGrad"] = bias_grad ? 1 : 0;
  c.run = [a, s](const Tensors& in) {
    ScopedEnv budget("IMPRINT_CONV_SCRATCH_BYTES", s.scratch_bytes);
    ScopedEnv cublas("IMPRINT_CUBLAS", s.without_cublas ? "0" : "");
    return run_float_op("conv2d_backward", {&in[0], &in[1], &in[2]}, a);
  };
  if (input_grad) c.tolerances.push_back(sum_tolerance(dtype, s.cout * s.kh * s.kw));
  if (weight_grad) c.tolerances.push_back(sum_tolerance(dtype, s.x[0] * ho * wo));
  if (bias_grad) c.tolerances.push_back(sum_tolerance(dtype, s.x[0] * ho * wo));
  return c;
}

const ConvSpec kSd3x3{{2, 320, 32, 32}, 320, 3, 3, 1, {1, 1, 1, 1}};         // a resnet conv at 256 px
const ConvSpec kSdDown{{1, 640, 16, 16}, 640, 3, 3, 2, {1, 1, 1, 1}};        // UNet downsample
const ConvSpec kSdShortcut{{2, 640, 16, 16}, 320, 1, 1, 1, {0, 0, 0, 0}};    // 1x1: a GEMM on x itself
const ConvSpec kConvIn{{2, 4, 32, 32}, 320, 3, 3, 1, {1, 1, 1, 1}};          // latents → 320 channels
const ConvSpec kConvOut{{2, 320, 16, 16}, 4, 3, 3, 1, {1, 1, 1, 1}};         // 320 channels → latents
const ConvSpec kOdd{{2, 3, 7, 9}, 5, 3, 3, 1, {1, 1, 1, 1}};                 // tiny and odd
const ConvSpec kOddStride2{{3, 3, 7, 9}, 5, 3, 3, 2, {0, 1, 0, 1}};          // VAE-style asymmetric pad
const ConvSpec kOddWide{{2, 6, 11, 8}, 7, 5, 2, 3, {2, 1, 0, 2}};            // 5x2 kernel, stride 3
const ConvSpec kOdd1x1Strided{{2, 5, 9, 7}, 3, 1, 1, 2, {0, 0, 0, 0}};       // 1x1 but strided: im2col
// K = 72 and Wo = 11: an output row's columns take 1584 bytes in bf16 and 3168
// in f32 (the f32 forward's columns, and every backward's f32 dcols); an image
// takes 13 rows. 7000 bytes: bf16 forward tiles of 4 rows, backward tiles of 2.
// 90000: chunks of 2 images in f32 (3 images: 2 + 1).
const ConvSpec kRowTiles{{3, 8, 13, 11}, 6, 3, 3, 1, {1, 1, 1, 1}, "7000"};
const ConvSpec kImageChunks{{3, 8, 13, 11}, 6, 3, 3, 1, {1, 1, 1, 1}, "90000"};
// Stride 2 (Ho 7, Wo 6): backward tiles of 2 rows, so taps of one dx row fall in two tiles.
// Through Imprint's kernels: the backward's dW and dcols are f32 outputs of bf16/f16 GEMMs.
const ConvSpec kSd3x3Fallback{{2, 320, 32, 32}, 320, 3, 3, 1, {1, 1, 1, 1}, "", true};
const ConvSpec kOddStride2Fallback{{3, 3, 7, 9}, 5, 3, 3, 2, {0, 1, 0, 1}, "", true};
const ConvSpec kRowTilesStride2{{2, 8, 13, 11}, 6, 3, 3, 2, {1, 1, 1, 1}, "4000"};

}  // namespace

IMPRINT_PARITY_CASE(gemm_conv_fwd_sd3x3_bias_bf16) { return conv_forward_case(DType::BF16, kSd3x3, true); }
IMPRINT_PARITY_CASE(gemm_conv_fwd_sd3x3_f16) { return conv_forward_case(DType::F16, kSd3x3, false); }
IMPRINT_PARITY_CASE(gemm_conv_fwd_down_bias_bf16) { return conv_forward_case(DType::BF16, kSdDown, true); }
IMPRINT_PARITY_CASE(gemm_conv_fwd_shortcut_bias_bf16) { return conv_forward_case(DType::BF16, kSdShortcut, true); }
IMPRINT_PARITY_CASE(gemm_conv_fwd_shortcut_f32) { return conv_forward_case(DType::F32, kSdShortcut, false); }
IMPRINT_PARITY_CASE(gemm_conv_fwd_conv_in_bias_f32) { return conv_forward_case(DType::F32, kConvIn, true); }
IMPRINT_PARITY_CASE(gemm_conv_fwd_conv_in_bias_bf16) { return conv_forward_case(DType::BF16, kConvIn, true); }
IMPRINT_PARITY_CASE(gemm_conv_fwd_conv_out_bias_f16) { return conv_forward_case(DType::F16, kConvOut, true); }
IMPRINT_PARITY_CASE(gemm_conv_fwd_odd_bias_f32) { return conv_forward_case(DType::F32, kOdd, true); }
IMPRINT_PARITY_CASE(gemm_conv_fwd_odd_stride2_f32) { return conv_forward_case(DType::F32, kOddStride2, false); }
IMPRINT_PARITY_CASE(gemm_conv_fwd_odd_wide_bias_f32) { return conv_forward_case(DType::F32, kOddWide, true); }
IMPRINT_PARITY_CASE(gemm_conv_fwd_odd_1x1_strided_bf16) { return conv_forward_case(DType::BF16, kOdd1x1Strided, true); }

IMPRINT_PARITY_CASE(gemm_conv_bwd_sd3x3_all_bf16) { return conv_backward_case(DType::BF16, kSd3x3, true, true); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_sd3x3_dx_only_f16) { return conv_backward_case(DType::F16, kSd3x3, false, false); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_down_weight_bf16) { return conv_backward_case(DType::BF16, kSdDown, true, false); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_shortcut_all_bf16) { return conv_backward_case(DType::BF16, kSdShortcut, true, true); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_shortcut_bias_f32) { return conv_backward_case(DType::F32, kSdShortcut, false, true); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_conv_in_all_f32) { return conv_backward_case(DType::F32, kConvIn, true, true); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_conv_out_all_f16) { return conv_backward_case(DType::F16, kConvOut, true, true); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_odd_all_f32) { return conv_backward_case(DType::F32, kOdd, true, true); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_odd_dx_only_f32) { return conv_backward_case(DType::F32, kOdd, false, false); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_odd_weight_f32) { return conv_backward_case(DType::F32, kOdd, true, false); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_odd_bias_f32) { return conv_backward_case(DType::F32, kOdd, false, true); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_odd_stride2_all_f32) { return conv_backward_case(DType::F32, kOddStride2, true, true); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_odd_stride2_all_bf16) { return conv_backward_case(DType::BF16, kOddStride2, true, true); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_odd_wide_all_f32) { return conv_backward_case(DType::F32, kOddWide, true, true); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_odd_1x1_strided_all_f16) { return conv_backward_case(DType::F16, kOdd1x1Strided, true, true); }

IMPRINT_PARITY_CASE(gemm_conv_fwd_row_tiles_bias_bf16) { return conv_forward_case(DType::BF16, kRowTiles, true); }
IMPRINT_PARITY_CASE(gemm_conv_fwd_image_chunks_f32) { return conv_forward_case(DType::F32, kImageChunks, false); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_row_tiles_all_bf16) { return conv_backward_case(DType::BF16, kRowTiles, true, true); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_row_tiles_all_f32) { return conv_backward_case(DType::F32, kRowTiles, true, false); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_row_tiles_stride2_f32) { return conv_backward_case(DType::F32, kRowTilesStride2, true, true); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_image_chunks_all_f16) { return conv_backward_case(DType::F16, kImageChunks, true, true); }
// inputGrad false (x a constant, as the tuning encoder's features): dweight and dbias alone, on
// the im2col path, the row-tiled one and the direct 1x1 GEMM.
IMPRINT_PARITY_CASE(gemm_conv_bwd_sd3x3_params_only_bf16) { return conv_backward_case(DType::BF16, kSd3x3, true, true, false); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_row_tiles_params_only_f16) { return conv_backward_case(DType::F16, kRowTiles, true, true, false); }
IMPRINT_PARITY_CASE(gemm_conv_bwd_shortcut_params_only_f32) { return conv_backward_case(DType::F32, kSdShortcut, true, true, false); }
IMPRINT_PARITY_CASE(gemm_fallback_conv_fwd_sd3x3_bias_bf16) { return conv_forward_case(DType::BF16, kSd3x3Fallback, true); }
IMPRINT_PARITY_CASE(gemm_fallback_conv_bwd_sd3x3_all_bf16) { return conv_backward_case(DType::BF16, kSd3x3Fallback, true, true); }
IMPRINT_PARITY_CASE(gemm_fallback_conv_bwd_odd_stride2_all_f16) {
  return conv_backward_case(DType::F16, kOddStride2Fallback, true, true);
}
IMPRINT_PARITY_CASE(gemm_fallback_conv_bwd_odd_stride2_all_f32) {
  return conv_backward_case(DType::F32, kOddStride2Fallback, true, true);
}

}  // namespace parity
}  // namespace imprint
