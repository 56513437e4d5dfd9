// group_norm forward and backward on the GPU, with the semantics of
// csrc/cpu/norm_group.cc: saved f32 mean and rstd = 1/sqrt(biased var + eps)
// per (sample, group), affine weight and bias optional, f32/f16/bf16 storage.
// One block per (sample, group) slice, which is one contiguous run of x.
// Statistics and gradient sums accumulate in double (the CPU's accuracy);
// the element-wise passes run in f32 like the CPU's.
//   y = (x − μ)·rstd·w + b
//   dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·w
//   dw = Σ dy·x̂, db = Σ dy over samples and positions (a second kernel, one
//   thread per channel summing the samples in order: deterministic, no atomics)
#include "block_reduce.cuh"
#include "core/args/norm.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "float_dispatch.cuh"
#include "kernels.cuh"
#include "scratch.cuh"

namespace imprint {
namespace cuda {
namespace {

// Threads per slice: SD's slices hold 10-40 K elements and there are only
// n·groups (often 64) of them, so each block keeps many loads in flight.
constexpr int kSliceThreads = 512;

template <class T>
__device__ __forceinline__ double param_or(const T* p, int64_t i, double fallback) {
  return p ? static_cast<double>(load(p[i])) : fallback;
}

template <class T>
__global__ void __launch_bounds__(kSliceThreads) group_norm_forward_kernel(GroupNormForwardArgs a) {
  const T* w = static_cast<const T*>(a.weight);
  const T* b = static_cast<const T*>(a.bias);
  const int64_t per_group = a.c / a.groups, slice = per_group * a.inner;
  const int64_t t = blockIdx.x;
  const T* x = static_cast<const T*>(a.x) + t * slice;
  T* y = a.y ? static_cast<T*>(a.y) + t * slice : nullptr;
  T* act = a.act ? static_cast<T*>(a.act) + t * slice : nullptr;

  double sum = 0;
  for (int64_t e = threadIdx.x; e < slice; e += blockDim.x) sum += load(x[e]);
  sum = block_sum(sum);
  const double count = static_cast<double>(slice);
  const float mean_hi = slice > 0 ? static_cast<float>(sum / count) : 0.0f;
  // Second pass around the f32 mean: Σd² − (Σd)²/n is the exact centred sum.
  double s1 = 0, s2 = 0;
  for (int64_t e = threadIdx.x; e < slice; e += blockDim.x) {
    const double d = static_cast<double>(load(x[e])) - mean_hi;
    s1 += d;
    s2 += d * d;
  }
  s1 = block_sum(s1);
  s2 = block_sum(s2);
  const double mean = slice > 0 ? mean_hi + s1 / count : 0.0;
  const double m2 = slice > 0 ? s2 - s1 * s1 / count : 0.0;
  const double var = slice > 0 ? fmax(m2, 0.0) / count : 0.0;
  const double rstd = 1.0 / sqrt(var + a.eps);
  const float mean_f = static_cast<float>(mean);
  if (threadIdx.x == 0) {
    static_cast<float*>(a.mean)[t] = mean_f;
    static_cast<float*>(a.rstd)[t] = static_cast<float>(rstd);
  }
  // As the CPU: x − hi in f32 is exact near the mean; lo goes into the shift.
  const double mean_lo = mean - mean_f;
  const int64_t c0 = (t % a.groups) * per_group;
  for (int64_t e = threadIdx.x; e < slice; e += blockDim.x) {
    const int64_t ch = c0 + e / a.inner;
    const double scale = rstd * param_or(w, ch, 1.0);
    const float shift = static_cast<float>(param_or(b, ch, 0.0) - mean_lo * scale);
    const T v = store<T>((load(x[e]) - mean_f) * static_cast<float>(scale) + shift);
    if (y) y[e] = v;
    // Fused SiLU on y as stored, with act.cu's formula: bit-identical to silu_forward(y).
    if (act) {
      const float f = load(v);
      act[e] = store<T>(f * (1.0f / (1.0f + expf(-f))));
    }
  }
}

// Per-slice pass of the backward: dx, and when ch_dy is set the per (sample,
// channel) sums Σ dy and Σ dy·(x − μ) and the slice's mean correction.
template <class T>
__global__ void __launch_bounds__(kSliceThreads) group_norm_backward_kernel(GroupNormBackwardArgs a, double* ch_dy,
                                                                        double* ch_dy_dev, double* mean_fix) {
  const T* w = static_cast<const T*>(a.weight);
  const int64_t per_group = a.c / a.groups, slice = per_group * a.inner;
  const int64_t t = blockIdx.x;
  const int64_t n = t / a.groups, c0 = (t % a.groups) * per_group;
  const T* x = static_cast<const T*>(a.x) + t * slice;
  const T* dy = static_cast<const T*>(a.dy) + t * slice;
  T* dx = static_cast<T*>(a.dx) + t * slice;
  const float mu = static_cast<const float*>(a.mean)[t];
  const double r = static_cast<const float*>(a.rstd)[t];

  // One warp per channel: the weight is constant along it and the channel
  // sums come out whole for the parameter gradients.
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  double sum_g = 0, sum_g_dev = 0, sum_dev = 0;
  for (int64_t ci = warp; ci < per_group; ci += warps) {
    const T* xc = x + ci * a.inner;
    const T* dyc = dy + ci * a.inner;
    double g = 0, g_dev = 0, dev = 0;
    for (int64_t i = lane; i < a.inner; i += 32) {
      const double d = static_cast<double>(load(xc[i])) - mu;
      const double gi = load(dyc[i]);
      g += gi;
      g_dev += gi * d;
      dev += d;
    }
    g = warp_sum(g);
    g_dev = warp_sum(g_dev);
    dev = warp_sum(dev);
    if (lane == 0) {
      const double wc = param_or(w, c0 + ci, 1.0);
      sum_g += wc * g;
      sum_g_dev += wc * g_dev;
      sum_dev += dev;
      if (ch_dy) {
        ch_dy[n * a.c + c0 + ci] = g;
        ch_dy_dev[n * a.c + c0 + ci] = g_dev;
      }
    }
  }
  sum_g = block_sum(sum_g);
  sum_g_dev = block_sum(sum_g_dev);
  sum_dev = block_sum(sum_dev);

  const double count = static_cast<double>(slice);
  // The exact mean is mu + delta; mu is the f32-rounded one.
  const double delta = slice > 0 ? sum_dev / count : 0.0;
  if (mean_fix && threadIdx.x == 0) mean_fix[t] = delta;
  const double mean_g = slice > 0 ? sum_g / count : 0.0;
  const double mean_g_xhat = slice > 0 ? r * (sum_g_dev - delta * sum_g) / count : 0.0;
  // dx = r·w·dy − r·mean_g − r²·mean_g_xhat·((x − mu) − delta)
  const float k1 = static_cast<float>(-r * r * mean_g_xhat);
  const float k0 = static_cast<float>(-r * mean_g + delta * r * r * mean_g_xhat);
  for (int64_t e = threadIdx.x; e < slice; e += blockDim.x) {
    const float scale = static_cast<float>(r * param_or(w, c0 + e / a.inner, 1.0));
    dx[e] = store<T>(scale * load(dy[e]) + k1 * (load(x[e]) - mu) + k0);
  }
}

// dw[c] = Σ_n rstd·(Σ dy·(x − μ) − fix·Σ dy), db[c] = Σ_n Σ dy; samples in order.
template <class T>
__global__ void group_norm_params_kernel(GroupNormBackwardArgs a, const double* ch_dy, const double* ch_dy_dev,
                                         const double* mean_fix) {
  const int64_t per_group = a.c / a.groups;
  const float* rstd = static_cast<const float*>(a.rstd);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < a.c; c += step) {
    const int64_t g = c / per_group;
    double acc_w = 0, acc_b = 0;
    for (int64_t n = 0; n < a.n; ++n) {
      const int64_t t = n * a.groups + g;
      const double s_dy = ch_dy[n * a.c + c];
      acc_w += static_cast<double>(rstd[t]) * (ch_dy_dev[n * a.c + c] - mean_fix[t] * s_dy);
      acc_b += s_dy;
    }
    if (a.dweight) static_cast<T*>(a.dweight)[c] = store<T>(static_cast<float>(acc_w));
    if (a.dbias) static_cast<T*>(a.dbias)[c] = store<T>(static_cast<float>(acc_b));
  }
}

void group_norm_forward_cuda(const GroupNormForwardArgs& a) {
  const int64_t slices = a.n * a.groups;
  if (slices <= 0) return;
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, "group_norm_forward", T, {
    group_norm_forward_kernel<T><<<static_cast<unsigned>(slices), kSliceThreads, 0, current_stream()>>>(a);
  });
  check_launch("group_norm_forward");
}

void group_norm_backward_cuda(const GroupNormBackwardArgs& a) {
  const int64_t slices = a.n * a.groups;
  const bool param_grads = a.dweight || a.dbias;
  // Per (sample, channel): Σ dy, Σ dy·(x − μ); per slice: the mean correction.
  const size_t channel_sums = param_grads ? static_cast<size_t>(a.n * a.c) : 0;
  const size_t fixes = param_grads ? static_cast<size_t>(slices) : 0;
  Scratch scratch((2 * channel_sums + fixes) * sizeof(double), "group_norm_backward");
  double* ch_dy = param_grads ? scratch.as<double>() : nullptr;
  double* ch_dy_dev = param_grads ? ch_dy + channel_sums : nullptr;
  double* mean_fix = param_grads ? ch_dy_dev + channel_sums : nullptr;
  const cudaStream_t stream = current_stream();
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, "group_norm_backward", T, {
    if (slices > 0) {
      group_norm_backward_kernel<T><<<static_cast<unsigned>(slices), kSliceThreads, 0, stream>>>(a, ch_dy, ch_dy_dev,
                                                                                            mean_fix);
      check_launch("group_norm_backward");
    }
    if (param_grads && a.c > 0) {
      group_norm_params_kernel<T><<<grid_size(a.c), kThreads, 0, stream>>>(a, ch_dy, ch_dy_dev, mean_fix);
      check_launch("group_norm_backward (parameter gradients)");
    }
  });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(group_norm_forward, CUDA, GroupNormForwardArgs, group_norm_forward_cuda);
IMPRINT_REGISTER_KERNEL(group_norm_backward, CUDA, GroupNormBackwardArgs, group_norm_backward_cuda);

}  // namespace cuda
}  // namespace imprint
