// layer_norm forward and backward on the GPU over the last dimension, with
// the semantics of csrc/cpu/norm_layer.cc: saved f32 mean and rstd per row,
// affine weight and bias optional, f32/f16/bf16 storage. One warp per row
// (rows of 64…1280 features); statistics and row sums accumulate in double.
//   y = (x − μ)·rstd·w + b
//   dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·w
//   dw = Σ_rows dy·x̂, db = Σ_rows dy: a column kernel sums fixed chunks of
//   rows and a last kernel adds the chunks in order (deterministic, no atomics).
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

constexpr int kRowsPerBlock = kThreads / 32;  // one warp per row
// Parameter gradients: columns × row-chunk reducers per block, rows per chunk.
constexpr int kColumns = 32, kReducers = 8;
constexpr int64_t kChunkRows = 64;
constexpr int64_t kMaxChunks = 1024;

template <class T>
__device__ __forceinline__ float param_or(const T* p, int64_t i, float fallback) {
  return p ? load(p[i]) : fallback;
}

unsigned row_blocks(int64_t rows) {
  return static_cast<unsigned>(std::min<int64_t>((rows + kRowsPerBlock - 1) / kRowsPerBlock, int64_t{1} << 20));
}

template <class T>
__global__ void __launch_bounds__(kThreads) layer_norm_forward_kernel(LayerNormForwardArgs a) {
  const T* w = static_cast<const T*>(a.weight);
  const T* b = static_cast<const T*>(a.bias);
  const int64_t d = a.d;
  const double count = static_cast<double>(d);
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5); r < a.rows; r += warps) {
    const T* x = static_cast<const T*>(a.x) + r * d;
    T* y = static_cast<T*>(a.y) + r * d;
    double sum = 0;
    for (int64_t j = lane; j < d; j += 32) sum += load(x[j]);
    sum = warp_sum(sum);
    const float mean_hi = d > 0 ? static_cast<float>(sum / count) : 0.0f;
    // Second pass around the f32 mean: Σd² − (Σd)²/n is the exact centred sum.
    double s1 = 0, s2 = 0;
    for (int64_t j = lane; j < d; j += 32) {
      const double dev = static_cast<double>(load(x[j])) - mean_hi;
      s1 += dev;
      s2 += dev * dev;
    }
    s1 = warp_sum(s1);
    s2 = warp_sum(s2);
    const double mean = d > 0 ? mean_hi + s1 / count : 0.0;
    const double var = d > 0 ? fmax(s2 - s1 * s1 / count, 0.0) / count : 0.0;
    const double rstd = 1.0 / sqrt(var + a.eps);
    const float mean_f = static_cast<float>(mean);
    if (lane == 0) {
      static_cast<float*>(a.mean)[r] = mean_f;
      static_cast<float*>(a.rstd)[r] = static_cast<float>(rstd);
    }
    const float scale = static_cast<float>(rstd);
    const float shift = static_cast<float>(-(mean - mean_f) * rstd);
    for (int64_t j = lane; j < d; j += 32) {
      y[j] = store<T>(((load(x[j]) - mean_f) * scale + shift) * param_or(w, j, 1.0f) + param_or(b, j, 0.0f));
    }
  }
}

// dx per row; with xhat_shift set, also each row's x̂ = (x − μ)·rstd + shift term.
template <class T>
__global__ void __launch_bounds__(kThreads) layer_norm_backward_kernel(LayerNormBackwardArgs a, float* xhat_shift) {
  const T* w = static_cast<const T*>(a.weight);
  const int64_t d = a.d;
  const double inv_d = d > 0 ? 1.0 / static_cast<double>(d) : 0.0;
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5); r < a.rows; r += warps) {
    const T* x = static_cast<const T*>(a.x) + r * d;
    const T* dy = static_cast<const T*>(a.dy) + r * d;
    T* dx = static_cast<T*>(a.dx) + r * d;
    const float mu = static_cast<const float*>(a.mean)[r];
    const double rs = static_cast<const float*>(a.rstd)[r];
    double g = 0, g_dev = 0, dev = 0;
    for (int64_t j = lane; j < d; j += 32) {
      const double dj = static_cast<double>(load(x[j])) - mu;
      const double gj = static_cast<double>(load(dy[j])) * param_or(w, j, 1.0f);
      g += gj;
      g_dev += gj * dj;
      dev += dj;
    }
    g = warp_sum(g);
    g_dev = warp_sum(g_dev);
    dev = warp_sum(dev);
    // The exact mean is mu + delta; mu is the f32-rounded one.
    const double delta = dev * inv_d;
    const double mean_g = g * inv_d;
    const double mean_g_xhat = rs * (g_dev - delta * g) * inv_d;
    const float k1 = static_cast<float>(-rs * rs * mean_g_xhat);
    const float k0 = static_cast<float>(-rs * mean_g + delta * rs * rs * mean_g_xhat);
    const float r_f = static_cast<float>(rs);
    for (int64_t j = lane; j < d; j += 32) {
      dx[j] = store<T>(r_f * param_or(w, j, 1.0f) * load(dy[j]) + k1 * (load(x[j]) - mu) + k0);
    }
    if (xhat_shift && lane == 0) xhat_shift[r] = static_cast<float>(-delta * rs);
  }
}

// Block (kColumns, kReducers) over columns [blockIdx.x·kColumns, +kColumns) and
// row chunk blockIdx.y; writes the chunk's Σ dy·x̂ and Σ dy per column.
template <class T>
__global__ void __launch_bounds__(kColumns* kReducers)
    layer_norm_param_chunks(LayerNormBackwardArgs a, const float* xhat_shift, int64_t chunk_rows, double* part_w,
                            double* part_b) {
  __shared__ double tile_w[kReducers][kColumns];
  __shared__ double tile_b[kReducers][kColumns];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColumns + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * chunk_rows;
  const int64_t r1 = min(a.rows, r0 + chunk_rows);
  double acc_w = 0, acc_b = 0;
  if (j < a.d) {
    const float* mean = static_cast<const float*>(a.mean);
    const float* rstd = static_cast<const float*>(a.rstd);
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kReducers) {
      const float g = load(static_cast<const T*>(a.dy)[r * a.d + j]);
      const float xhat = (load(static_cast<const T*>(a.x)[r * a.d + j]) - mean[r]) * rstd[r] + xhat_shift[r];
      acc_w += g * xhat;
      acc_b += g;
    }
  }
  tile_w[threadIdx.y][threadIdx.x] = acc_w;
  tile_b[threadIdx.y][threadIdx.x] = acc_b;
  __syncthreads();
  if (threadIdx.y == 0 && j < a.d) {
    for (int k = 1; k < kReducers; ++k) {
      acc_w += tile_w[k][threadIdx.x];
      acc_b += tile_b[k][threadIdx.x];
    }
    part_w[blockIdx.y * a.d + j] = acc_w;
    part_b[blockIdx.y * a.d + j] = acc_b;
  }
}

template <class T>
__global__ void layer_norm_param_totals(LayerNormBackwardArgs a, int64_t chunks, const double* part_w,
                                        const double* part_b) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < a.d; j += step) {
    double acc_w = 0, acc_b = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      acc_w += part_w[c * a.d + j];
      acc_b += part_b[c * a.d + j];
    }
    if (a.dweight) static_cast<T*>(a.dweight)[j] = store<T>(static_cast<float>(acc_w));
    if (a.dbias) static_cast<T*>(a.dbias)[j] = store<T>(static_cast<float>(acc_b));
  }
}

void layer_norm_forward_cuda(const LayerNormForwardArgs& a) {
  if (a.rows <= 0) return;
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, "layer_norm_forward", T, {
    layer_norm_forward_kernel<T><<<row_blocks(a.rows), kThreads, 0, current_stream()>>>(a);
  });
  check_launch("layer_norm_forward");
}

void layer_norm_backward_cuda(const LayerNormBackwardArgs& a) {
  const bool param_grads = a.dweight || a.dbias;
  const int64_t rows = std::max<int64_t>(a.rows, 0);
  const int64_t chunk_rows = std::max(kChunkRows, (rows + kMaxChunks - 1) / kMaxChunks);
  // At least one chunk, so parameter gradients over zero rows come out zero.
  const int64_t chunks = std::max<int64_t>(1, (rows + chunk_rows - 1) / chunk_rows);
  const size_t shift_bytes = param_grads ? static_cast<size_t>(rows) * sizeof(float) : 0;
  const size_t shift_padded = (shift_bytes + 255) / 256 * 256;  // keeps the doubles aligned
  const size_t part_count = param_grads ? static_cast<size_t>(chunks * a.d) : 0;
  Scratch scratch(shift_padded + 2 * part_count * sizeof(double), "layer_norm_backward");
  float* xhat_shift = param_grads ? scratch.as<float>() : nullptr;
  double* part_w = param_grads ? scratch.as<double>(shift_padded) : nullptr;
  double* part_b = param_grads ? part_w + part_count : nullptr;
  const cudaStream_t stream = current_stream();
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, "layer_norm_backward", T, {
    if (rows > 0) {
      layer_norm_backward_kernel<T><<<row_blocks(rows), kThreads, 0, stream>>>(a, xhat_shift);
      check_launch("layer_norm_backward");
    }
    if (param_grads && a.d > 0) {
      const dim3 grid(static_cast<unsigned>((a.d + kColumns - 1) / kColumns), static_cast<unsigned>(chunks));
      layer_norm_param_chunks<T><<<grid, dim3(kColumns, kReducers), 0, stream>>>(a, xhat_shift, chunk_rows, part_w,
                                                                                 part_b);
      check_launch("layer_norm_backward (parameter gradient chunks)");
      layer_norm_param_totals<T><<<grid_size(a.d), kThreads, 0, stream>>>(a, chunks, part_w, part_b);
      check_launch("layer_norm_backward (parameter gradients)");
    }
  });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(layer_norm_forward, CUDA, LayerNormForwardArgs, layer_norm_forward_cuda);
IMPRINT_REGISTER_KERNEL(layer_norm_backward, CUDA, LayerNormBackwardArgs, layer_norm_backward_cuda);

}  // namespace cuda
}  // namespace imprint
