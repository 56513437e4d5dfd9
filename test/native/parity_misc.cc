// Parity cases for the misc nn kernels: token and timestep embeddings,
// nearest resizing (any size and 2x), concat/split and the head swap, masked
// MSE loss, AdamW and gradient-norm clipping, plus a tiny UNet forward that
// runs the whole model graph.
//
// The CPU kernels compute in f32 only. For f16/bf16 cases the CPU run widens
// the half inputs to f32 and rounds the float outputs back to the case's
// dtype, so the CUDA kernels (half storage, f32 arithmetic) are compared
// against the f32 reference rounded once.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "models/model_util.h"
#include "ops/ops.h"
#include "parity.h"

namespace imprint {
namespace parity {
namespace {

// Runs `op` on `in` (all inputs, in order; a null-free list) as JavaScript
// would, widening half inputs on the CPU as described above.
Tensors run(const std::string& op, const Tensors& in, const ops::Attrs& a) {
  DType half = DType::F32;
  for (const Tensor& t : in)
    if (t.device.is_cpu() && (t.dtype == DType::F16 || t.dtype == DType::BF16)) half = t.dtype;
  if (half == DType::F32) {
    ops::OpInputs ptrs;
    for (const Tensor& t : in) ptrs.push_back(&t);
    return run_op(op, ptrs, a);
  }
  Tensors wide;
  for (const Tensor& t : in) wide.push_back(t.dtype == half ? run_launch(ops::cast(t, DType::F32)) : t);
  ops::OpInputs ptrs;
  for (const Tensor& t : wide) ptrs.push_back(&t);
  Tensors outs = run_op(op, ptrs, a);
  for (Tensor& t : outs)
    if (t.dtype == DType::F32) t = run_launch(ops::cast(t, half));
  return outs;
}

// ---- embeddings --------------------------------------------------------------

ParityCase embedding_forward_case(DType dtype, DType id_dtype, int64_t vocab, int64_t dim, const Shape& ids_shape) {
  ParityCase c;
  c.inputs = {integers(ids_shape, id_dtype, 0, vocab), normal({vocab, dim}, dtype)};
  c.run = [](const Tensors& in) { return run("embedding_forward", in, {}); };
  c.tolerances = {{0, 0}};  // a copy
  return c;
}

// ids drawn from [lo, hi): a narrow range repeats ids (as padding does).
ParityCase embedding_backward_case(DType dtype, DType id_dtype, int64_t vocab, int64_t dim, const Shape& ids_shape,
                                   int64_t lo, int64_t hi, bool with_mask) {
  ParityCase c;
  Shape dy_shape = ids_shape;
  dy_shape.push_back(dim);
  c.inputs = {normal(dy_shape, dtype), integers(ids_shape, id_dtype, lo, hi)};
  if (with_mask) c.inputs.push_back(mask({vocab}, DType::U8, 0.5));
  c.run = [vocab](const Tensors& in) { return run("embedding_backward", in, attrs({{"vocab", static_cast<double>(vocab)}})); };
  return c;
}

}  // namespace

// Stable Diffusion's CLIP table (49408 × 768) with two prompts of 77 tokens.
IMPRINT_PARITY_CASE(embedding_forward_sd_f32) { return embedding_forward_case(DType::F32, DType::I64, 49408, 768, {2, 77}); }
IMPRINT_PARITY_CASE(embedding_forward_f16_i32) { return embedding_forward_case(DType::F16, DType::I32, 1000, 320, {3, 77}); }
IMPRINT_PARITY_CASE(embedding_forward_bf16_odd) { return embedding_forward_case(DType::BF16, DType::I64, 37, 33, {5, 7}); }
IMPRINT_PARITY_CASE(embedding_backward_sd_f32) {
  // Ids near the end of the vocabulary repeat like the padding token does.
  return embedding_backward_case(DType::F32, DType::I64, 49408, 768, {2, 77}, 49380, 49408, false);
}
IMPRINT_PARITY_CASE(embedding_backward_f32_mask) {
  return embedding_backward_case(DType::F32, DType::I32, 100, 257, {4, 77}, 0, 100, true);
}
IMPRINT_PARITY_CASE(embedding_backward_f16) {
  return embedding_backward_case(DType::F16, DType::I32, 64, 768, {2, 77}, 0, 20, false);
}
IMPRINT_PARITY_CASE(embedding_backward_bf16_mask) {
  return embedding_backward_case(DType::BF16, DType::I64, 50, 40, {3, 9}, 0, 10, true);
}

namespace {

ParityCase timestep_case(DType dtype, int64_t n, int64_t dim, bool flip, double shift, double period, double scale) {
  ParityCase c;
  c.inputs = {integers({n}, dtype, 0, 1000)};
  c.run = [dim, flip, shift, period, scale](const Tensors& in) {
    return run("timestep_embedding_forward", in,
               attrs({{"dim", static_cast<double>(dim)}, {"flipSinToCos", flip ? 1.0 : 0.0}, {"freqShift", shift},
                      {"maxPeriod", period}, {"scale", scale}}));
  };
  return c;
}

}  // namespace

IMPRINT_PARITY_CASE(timestep_embedding_sd_f32) { return timestep_case(DType::F32, 2, 320, true, 0, 10000, 1); }
IMPRINT_PARITY_CASE(timestep_embedding_odd_f32) { return timestep_case(DType::F32, 7, 321, false, 1, 5000, 2.5); }
IMPRINT_PARITY_CASE(timestep_embedding_f16) { return timestep_case(DType::F16, 4, 320, true, 0, 10000, 1); }
IMPRINT_PARITY_CASE(timestep_embedding_bf16) { return timestep_case(DType::BF16, 3, 1281, true, 1, 10000, 1); }

// ---- nearest resizing ------------------------------------------------------------

namespace {

ParityCase upsample_forward_case(DType dtype, const Shape& x, int64_t oh, int64_t ow) {
  ParityCase c;
  c.inputs = {normal(x, dtype)};
  c.run = [oh, ow](const Tensors& in) {
    return run("upsample_nearest_forward", in, attrs({{"outH", static_cast<double>(oh)}, {"outW", static_cast<double>(ow)}}));
  };
  c.tolerances = {{0, 0}};  // a gather
  return c;
}

ParityCase upsample_backward_case(DType dtype, const Shape& dy, int64_t ih, int64_t iw) {
  ParityCase c;
  c.inputs = {normal(dy, dtype)};
  c.run = [ih, iw](const Tensors& in) {
    return run("upsample_nearest_backward", in, attrs({{"inH", static_cast<double>(ih)}, {"inW", static_cast<double>(iw)}}));
  };
  // f32: the same additions in the same order, so bit for bit.
  if (dtype == DType::F32) c.tolerances = {{0, 0}};
  return c;
}

}  // namespace

// SD's up block at 8×8 → 16×16 (the 2x kernels), each dtype.
IMPRINT_PARITY_CASE(upsample2x_forward_sd_f32) { return upsample_forward_case(DType::F32, {2, 1280, 8, 8}, 16, 16); }
IMPRINT_PARITY_CASE(upsample2x_forward_sd_f16) { return upsample_forward_case(DType::F16, {2, 1280, 8, 8}, 16, 16); }
IMPRINT_PARITY_CASE(upsample2x_forward_sd_bf16) { return upsample_forward_case(DType::BF16, {2, 1280, 8, 8}, 16, 16); }
IMPRINT_PARITY_CASE(upsample2x_backward_sd_f32) { return upsample_backward_case(DType::F32, {2, 1280, 16, 16}, 8, 8); }
IMPRINT_PARITY_CASE(upsample2x_backward_sd_f16) { return upsample_backward_case(DType::F16, {2, 1280, 16, 16}, 8, 8); }
IMPRINT_PARITY_CASE(upsample2x_backward_sd_bf16) { return upsample_backward_case(DType::BF16, {2, 1280, 16, 16}, 8, 8); }
IMPRINT_PARITY_CASE(upsample2x_forward_odd_f32) { return upsample_forward_case(DType::F32, {1, 3, 5, 7}, 10, 14); }
IMPRINT_PARITY_CASE(upsample2x_op_f32) {
  ParityCase c;
  c.inputs = {normal({2, 640, 9, 11})};
  c.run = [](const Tensors& in) { return run("upsample_nearest2x_forward", in, {}); };
  c.tolerances = {{0, 0}};
  return c;
}
IMPRINT_PARITY_CASE(upsample2x_backward_op_bf16) {
  ParityCase c;
  c.inputs = {normal({1, 320, 18, 22}, DType::BF16)};
  c.run = [](const Tensors& in) { return run("upsample_nearest2x_backward", in, {}); };
  return c;
}
// Any size: a non-integer ratio, a 3x, a shrink, and a single pixel.
IMPRINT_PARITY_CASE(upsample_forward_ratio_f32) { return upsample_forward_case(DType::F32, {2, 320, 13, 17}, 20, 30); }
IMPRINT_PARITY_CASE(upsample_forward_3x_f16) { return upsample_forward_case(DType::F16, {1, 64, 7, 9}, 21, 27); }
IMPRINT_PARITY_CASE(upsample_forward_shrink_bf16) { return upsample_forward_case(DType::BF16, {1, 4, 33, 35}, 16, 16); }
IMPRINT_PARITY_CASE(upsample_forward_pixel_f32) { return upsample_forward_case(DType::F32, {3, 5, 1, 1}, 7, 3); }
IMPRINT_PARITY_CASE(upsample_backward_ratio_f32) { return upsample_backward_case(DType::F32, {2, 320, 20, 30}, 13, 17); }
IMPRINT_PARITY_CASE(upsample_backward_3x_f16) { return upsample_backward_case(DType::F16, {1, 64, 21, 27}, 7, 9); }
IMPRINT_PARITY_CASE(upsample_backward_shrink_bf16) { return upsample_backward_case(DType::BF16, {1, 4, 16, 16}, 33, 35); }
IMPRINT_PARITY_CASE(upsample_backward_pixel_f32) { return upsample_backward_case(DType::F32, {3, 5, 7, 3}, 1, 1); }

// ---- concat, split, head swap ----------------------------------------------------

namespace {

ParityCase concat_case(DType dtype, const std::vector<Shape>& shapes, int64_t dim) {
  ParityCase c;
  for (const Shape& s : shapes) c.inputs.push_back(is_floating(dtype) ? normal(s, dtype) : integers(s, dtype, 0, 100));
  c.run = [dim](const Tensors& in) { return run("concat_forward", in, attrs({{"dim", static_cast<double>(dim)}})); };
  return c;
}

ParityCase split_case(DType dtype, const Shape& x, int64_t dim, const std::vector<double>& sizes) {
  ParityCase c;
  c.inputs = {is_floating(dtype) ? normal(x, dtype) : integers(x, dtype, 0, 100)};
  c.run = [dim, sizes](const Tensors& in) {
    ops::Attrs a = attrs({{"dim", static_cast<double>(dim)}});
    a.lists["sizes"] = sizes;
    return run("split_forward", in, a);
  };
  return c;
}

ParityCase swap_case(DType dtype, const Shape& x) {
  ParityCase c;
  c.inputs = {is_floating(dtype) ? normal(x, dtype) : integers(x, dtype, 0, 100)};
  c.run = [](const Tensors& in) { return Tensors{models::swap_dims12(in[0])}; };
  c.tolerances = {{0, 0}};
  return c;
}

}  // namespace

// The UNet's skip concat: [2, 1280, 16, 16] + [2, 640, 16, 16] along channels.
IMPRINT_PARITY_CASE(concat_sd_skip_f16) { return concat_case(DType::F16, {{2, 1280, 16, 16}, {2, 640, 16, 16}}, 1); }
IMPRINT_PARITY_CASE(concat_sd_skip_f32) { return concat_case(DType::F32, {{2, 1280, 16, 16}, {2, 640, 16, 16}}, 1); }
IMPRINT_PARITY_CASE(concat_odd_bf16) { return concat_case(DType::BF16, {{3, 5, 7}, {3, 2, 7}, {3, 0, 7}, {3, 9, 7}}, 1); }
IMPRINT_PARITY_CASE(concat_last_dim_u8) { return concat_case(DType::U8, {{4, 3}, {4, 5}, {4, 1}}, -1); }
IMPRINT_PARITY_CASE(concat_dim0_i64) { return concat_case(DType::I64, {{2, 3}, {5, 3}}, 0); }
IMPRINT_PARITY_CASE(split_sd_skip_bf16) { return split_case(DType::BF16, {2, 1920, 16, 16}, 1, {1280, 640}); }
IMPRINT_PARITY_CASE(split_sd_skip_f32) { return split_case(DType::F32, {2, 1920, 16, 16}, 1, {1280, 640}); }
IMPRINT_PARITY_CASE(split_odd_f16) { return split_case(DType::F16, {3, 7, 11}, -1, {3, 0, 5, 3}); }
IMPRINT_PARITY_CASE(split_i32) { return split_case(DType::I32, {6, 5}, 0, {1, 5}); }
// Head splits: [B, T, heads, hd] → [B, heads, T, hd] for SD's head dims, and the
// [N, C, HW, 1] token transpose (one element per row).
IMPRINT_PARITY_CASE(swap_dims12_text_f32) { return swap_case(DType::F32, {2, 77, 12, 64}); }
IMPRINT_PARITY_CASE(swap_dims12_hd40_bf16) { return swap_case(DType::BF16, {2, 4096, 8, 40}); }
IMPRINT_PARITY_CASE(swap_dims12_hd160_f16) { return swap_case(DType::F16, {2, 64, 8, 160}); }
IMPRINT_PARITY_CASE(swap_dims12_hd80_f32) { return swap_case(DType::F32, {1, 256, 8, 80}); }
IMPRINT_PARITY_CASE(swap_dims12_tokens_bf16) { return swap_case(DType::BF16, {2, 320, 1024, 1}); }
IMPRINT_PARITY_CASE(swap_dims12_odd_u8) { return swap_case(DType::U8, {3, 5, 7, 3}); }

// ---- masked MSE --------------------------------------------------------------------

namespace {

// mask_shape empty: no mask. backward: the gradient with gradScale 0.5.
ParityCase mse_case(DType dtype, const Shape& pred, const Shape& mask_shape, bool backward) {
  ParityCase c;
  c.inputs = {normal(pred, dtype), normal(pred, dtype)};
  if (!mask_shape.empty()) c.inputs.push_back(mask(mask_shape, dtype, 0.7));
  c.run = [backward](const Tensors& in) {
    if (backward) return run("mse_loss_backward", in, attrs({{"gradScale", 0.5}}));
    return run("mse_loss_forward", in, {});
  };
  return c;
}

}  // namespace

// SD latents [2, 4, 64, 64], each dtype, without and with masks of several broadcasts.
IMPRINT_PARITY_CASE(mse_forward_f32) { return mse_case(DType::F32, {2, 4, 64, 64}, {}, false); }
IMPRINT_PARITY_CASE(mse_backward_f32) { return mse_case(DType::F32, {2, 4, 64, 64}, {}, true); }
IMPRINT_PARITY_CASE(mse_forward_f16) { return mse_case(DType::F16, {2, 4, 64, 64}, {}, false); }
IMPRINT_PARITY_CASE(mse_backward_bf16) { return mse_case(DType::BF16, {2, 4, 64, 64}, {}, true); }
IMPRINT_PARITY_CASE(mse_forward_mask_channels_f32) { return mse_case(DType::F32, {2, 4, 64, 64}, {2, 1, 64, 64}, false); }
IMPRINT_PARITY_CASE(mse_backward_mask_channels_f32) { return mse_case(DType::F32, {2, 4, 64, 64}, {2, 1, 64, 64}, true); }
IMPRINT_PARITY_CASE(mse_forward_mask_full_bf16) { return mse_case(DType::BF16, {2, 4, 33, 35}, {2, 4, 33, 35}, false); }
IMPRINT_PARITY_CASE(mse_backward_mask_full_f16) { return mse_case(DType::F16, {2, 4, 33, 35}, {2, 4, 33, 35}, true); }
// A mask constant along the last dims (per-row coefficient path) and a shared spatial mask.
IMPRINT_PARITY_CASE(mse_forward_mask_rows_f32) { return mse_case(DType::F32, {3, 4, 9, 7}, {3, 4, 1, 1}, false); }
IMPRINT_PARITY_CASE(mse_backward_mask_rows_f32) { return mse_case(DType::F32, {3, 4, 9, 7}, {3, 4, 1, 1}, true); }
IMPRINT_PARITY_CASE(mse_backward_mask_rows_bf16) { return mse_case(DType::BF16, {3, 4, 9, 7}, {3, 4, 1, 1}, true); }
IMPRINT_PARITY_CASE(mse_forward_mask_spatial_f16) { return mse_case(DType::F16, {2, 4, 17, 19}, {17, 19}, false); }
IMPRINT_PARITY_CASE(mse_backward_mask_spatial_f32) { return mse_case(DType::F32, {2, 4, 17, 19}, {17, 19}, true); }

// ---- AdamW ---------------------------------------------------------------------------

namespace {

ParityCase adamw_case(DType dtype, const Shape& shape, int64_t step, double weight_decay) {
  ParityCase c;
  c.inputs = {normal(shape, dtype, 0, 0.05), normal(shape, dtype, 0, 1e-3), normal(shape, dtype, 0, 1e-4),
              uniform(shape, dtype, 0, 1e-6)};
  c.run = [step, weight_decay](const Tensors& in) {
    return run("adamw_step", in,
               attrs({{"lr", 1e-4}, {"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-8}, {"weightDecay", weight_decay},
                      {"step", static_cast<double>(step)}}));
  };
  return c;
}

// Mixed precision: an f32 master and moments, the grad in grad_dtype, and the
// model's copy (input 4, only its dtype is read) written in copy_dtype. The CPU
// kernel takes these dtypes itself, so the inputs go in as they are.
ParityCase adamw_mixed_case(DType grad_dtype, DType copy_dtype, const Shape& shape, int64_t step) {
  ParityCase c;
  c.inputs = {normal(shape, DType::F32, 0, 0.05), normal(shape, grad_dtype, 0, 1e-3), normal(shape, DType::F32, 0, 1e-4),
              uniform(shape, DType::F32, 0, 1e-6), constant(shape, copy_dtype, 0)};
  c.run = [step](const Tensors& in) {
    ops::OpInputs ptrs;
    for (const Tensor& t : in) ptrs.push_back(&t);
    return run_op("adamw_step", ptrs, attrs({{"lr", 1e-4}, {"weightDecay", 1e-2}, {"step", static_cast<double>(step)}}));
  };
  return c;
}

}  // namespace

// Mixed precision: bf16/f16 grads and copies beside f32 masters.
IMPRINT_PARITY_CASE(adamw_master_bf16) { return adamw_mixed_case(DType::BF16, DType::BF16, {1000, 1000}, 20); }
IMPRINT_PARITY_CASE(adamw_master_f16) { return adamw_mixed_case(DType::F16, DType::F16, {999, 77}, 3); }
IMPRINT_PARITY_CASE(adamw_master_f32_grad_bf16_copy) { return adamw_mixed_case(DType::F32, DType::BF16, {7, 13}, 1); }

// A million parameters (a few attention projections' worth), each dtype.
IMPRINT_PARITY_CASE(adamw_1m_f32) { return adamw_case(DType::F32, {1000, 1000}, 10, 1e-2); }
IMPRINT_PARITY_CASE(adamw_1m_f16) { return adamw_case(DType::F16, {1000, 1000}, 1, 1e-2); }
IMPRINT_PARITY_CASE(adamw_1m_bf16) { return adamw_case(DType::BF16, {1000, 1000}, 500, 0); }
IMPRINT_PARITY_CASE(adamw_odd_f32) { return adamw_case(DType::F32, {7, 13}, 3, 0.1); }

// ---- gradient-norm clipping --------------------------------------------------------

namespace {

ParityCase clip_case(DType dtype, const std::vector<Shape>& shapes, double max_norm, double norm_type) {
  ParityCase c;
  for (const Shape& s : shapes) c.inputs.push_back(normal(s, dtype, 0, 0.01));
  c.run = [max_norm, norm_type](const Tensors& in) {
    return run("clip_grad_norm", in, attrs({{"maxNorm", max_norm}, {"normType", norm_type}}));
  };
  return c;
}

// Five gradients shaped like an SD attention block's: conv, bias, projections, a vector.
const std::vector<Shape> kSdGrads = {{320, 320, 3, 3}, {320}, {640, 320}, {1280, 768}, {77}};

}  // namespace

IMPRINT_PARITY_CASE(clip_grad_norm_sd_f32) { return clip_case(DType::F32, kSdGrads, 1.0, 2); }
IMPRINT_PARITY_CASE(clip_grad_norm_sd_f16) { return clip_case(DType::F16, kSdGrads, 1.0, 2); }
IMPRINT_PARITY_CASE(clip_grad_norm_sd_bf16) { return clip_case(DType::BF16, kSdGrads, 1.0, 2); }
IMPRINT_PARITY_CASE(clip_grad_norm_no_clip_f32) { return clip_case(DType::F32, kSdGrads, 1e9, 2); }
IMPRINT_PARITY_CASE(clip_grad_norm_l1_f32) { return clip_case(DType::F32, {{1000, 3}, {5}, {70000}}, 1.0, 1); }
IMPRINT_PARITY_CASE(clip_grad_norm_inf_f32) {
  return clip_case(DType::F32, {{1000, 3}, {5}, {70000}}, 0.01, std::numeric_limits<double>::infinity());
}
IMPRINT_PARITY_CASE(clip_grad_norm_p3_f32) { return clip_case(DType::F32, {{33, 17}, {65537}}, 0.1, 3); }
IMPRINT_PARITY_CASE(clip_grad_norm_many_f32) {
  // More tensors than one launch carries, with an empty one among them.
  std::vector<Shape> shapes;
  for (int i = 0; i < 41; ++i) shapes.push_back({static_cast<int64_t>(i * 37 % 101)});
  return clip_case(DType::F32, shapes, 0.05, 2);
}

// ---- device memory ---------------------------------------------------------------------

// A request no device can meet fails with OUT_OF_MEMORY, and the device keeps
// working: a concat on it afterwards still matches the CPU. Output 0 is 1
// when the error came with the right code.
IMPRINT_PARITY_CASE(out_of_memory_recovers) {
  ParityCase c;
  c.inputs = {normal({3, 5}), normal({3, 2})};
  c.run = [](const Tensors& in) {
    bool out_of_memory = false;
    try {
      Tensor::empty({int64_t{1} << 50}, DType::U8, in[0].device);  // a petabyte
    } catch (const Error& e) {
      out_of_memory = e.code() == ErrorCode::OutOfMemory;
    }
    Tensors outs = {run_launch(ops::full({1}, DType::F32, in[0].device, out_of_memory ? 1 : 0))};
    for (const Tensor& t : run("concat_forward", in, attrs({{"dim", 1}}))) outs.push_back(t);
    return outs;
  };
  c.tolerances = {{0, 0}, {0, 0}};
  return c;
}

// On CUDA, a freed 3 MiB block is cached and serves the next request of that
// size, and empty_cache gives it back. Output: 1 per property that holds (the
// CPU run, which has no such guarantees to check, reports 1s).
IMPRINT_PARITY_CASE(caching_allocator_reuses_blocks) {
  ParityCase c;
  c.inputs = {constant({1}, DType::F32, 0)};
  c.run = [](const Tensors& in) {
    const Device device = in[0].device;
    Backend& backend = backend_for(device);
    const int64_t bytes = 3 << 20;
    const uint64_t cached_before = backend.cached_bytes();
    const void* first = Tensor::empty({bytes}, DType::U8, device).data();  // freed at once
    const bool cached = backend.cached_bytes() >= cached_before + static_cast<uint64_t>(bytes);
    const bool reused = Tensor::empty({bytes}, DType::U8, device).data() == first;
    backend.empty_cache();
    const bool emptied = backend.cached_bytes() == 0;
    const bool cpu = device.is_cpu();
    const float flags[3] = {cpu || cached ? 1.0f : 0.0f, cpu || reused ? 1.0f : 0.0f, cpu || emptied ? 1.0f : 0.0f};
    const Tensor host = ops::from_host(flags, sizeof flags, {3}, DType::F32, DType::F32);
    return Tensors{cpu ? host : run_launch(ops::to_device(host, device))};
  };
  c.tolerances = {{0, 0}};
  return c;
}

// ---- a tiny UNet forward (the whole model graph on one device) ---------------------------

namespace {

// The weights of unet_forward in its input order (csrc/models/unet_op.cc),
// for blockOutChannels {32, 64}, one layer per block, cross-attention in the
// first down block and the last up block, 2 heads, cross_attention_dim 24.
struct TinyUnet {
  std::vector<InputSpec> specs;
  const int64_t temb = 64, cross = 24, groups = 8;

  void w(const Shape& s) { specs.push_back(normal(s, DType::F32, 0, 0.1)); }
  void bias(int64_t c) { specs.push_back(normal({c}, DType::F32, 0, 0.02)); }
  void norm(int64_t c) {
    specs.push_back(normal({c}, DType::F32, 1, 0.05));
    bias(c);
  }
  void resnet(int64_t cin, int64_t cout) {
    norm(cin);
    w({cout, cin, 3, 3});
    bias(cout);
    w({cout, temb});
    bias(cout);
    norm(cout);
    w({cout, cout, 3, 3});
    bias(cout);
    if (cin != cout) {
      w({cout, cin, 1, 1});
      bias(cout);
    }
  }
  void attention(int64_t c, int64_t kv) {
    w({c, c});
    w({c, kv});
    w({c, kv});
    w({c, c});
    bias(c);
  }
  void transformer(int64_t c) {
    norm(c);
    w({c, c, 1, 1});
    bias(c);
    norm(c);
    attention(c, c);
    norm(c);
    attention(c, cross);
    norm(c);
    w({8 * c, c});
    bias(8 * c);
    w({c, 4 * c});
    bias(c);
    w({c, c, 1, 1});
    bias(c);
  }

  TinyUnet() {
    const int64_t ch[2] = {32, 64};
    w({ch[0], 4, 3, 3});  // conv_in
    bias(ch[0]);
    w({temb, ch[0]});  // time_embedding
    bias(temb);
    w({temb, temb});
    bias(temb);
    // down_blocks.0 (cross-attention), down_blocks.1 (plain, last: no downsampler)
    resnet(ch[0], ch[0]);
    transformer(ch[0]);
    w({ch[0], ch[0], 3, 3});
    bias(ch[0]);
    resnet(ch[0], ch[1]);
    // mid_block
    resnet(ch[1], ch[1]);
    transformer(ch[1]);
    resnet(ch[1], ch[1]);
    // up_blocks.0 (plain, mirrors down 1): 2 resnets, then the upsampler
    resnet(ch[1] + ch[1], ch[1]);
    resnet(ch[1] + ch[0], ch[1]);
    w({ch[1], ch[1], 3, 3});
    bias(ch[1]);
    // up_blocks.1 (cross-attention, mirrors down 0), last: no upsampler
    resnet(ch[1] + ch[0], ch[0]);
    transformer(ch[0]);
    resnet(ch[0] + ch[0], ch[0]);
    transformer(ch[0]);
    norm(ch[0]);  // conv_norm_out
    w({4, ch[0], 3, 3});  // conv_out
    bias(4);
  }
};

}  // namespace

IMPRINT_PARITY_CASE(unet_forward_tiny_f32) {
  ParityCase c;
  const TinyUnet u;
  // An odd latent side exercises the upsampler's resize to the skip's size.
  c.inputs = {normal({2, 4, 9, 8}), integers({2}, DType::F32, 0, 1000), normal({2, 77, u.cross})};
  c.inputs.insert(c.inputs.end(), u.specs.begin(), u.specs.end());
  c.run = [](const Tensors& in) {
    ops::Attrs a = attrs({{"layersPerBlock", 1}, {"groups", 8}});
    a.lists["blockOutChannels"] = {32, 64};
    a.lists["crossDown"] = {1, 0};
    a.lists["crossUp"] = {0, 1};
    a.lists["heads"] = {2, 2};
    a.lists["transformerLayers"] = {1, 1};
    return run("unet_forward", in, a);
  };
  // Dozens of GEMMs and convolutions in a different order on each device.
  c.tolerances = {{2e-3, 2e-3}};
  return c;
}

}  // namespace parity
}  // namespace imprint
