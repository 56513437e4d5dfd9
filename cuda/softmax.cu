// Softmax and its backward on the GPU along one axis of x viewed as
// [outer, size, inner], as csrc/cpu/act_softmax.cc defines them:
//   y = e^(x − max) / Σ e^(x − max),  dx = y·(dy − Σ dy·y).
// Values are computed in f32 whatever the storage dtype. Two shapes:
//  - inner = 1 (the last axis, attention scores): one warp per row, lanes
//    striding over it, warp-shuffle max and sums.
//  - inner > 1: one thread per column, adjacent threads on adjacent columns
//    so every pass over the axis reads coalesced.
// A row whose maximum is ±inf comes out NaN, as on the CPU and in PyTorch.
#include "block_reduce.cuh"
#include "core/args/act.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "float_dispatch.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

constexpr int kRowsPerBlock = kThreads / 32;  // one warp per row

unsigned row_blocks(int64_t rows) {
  return static_cast<unsigned>(std::min<int64_t>((rows + kRowsPerBlock - 1) / kRowsPerBlock, int64_t{1} << 20));
}

// Rows are whole warps' work, so every lane of a warp reaches the shuffles.
template <class T>
__global__ void softmax_forward_rows(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t n) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5); r < rows; r += warps) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    float m = -INFINITY;
    bool has_nan = false;
    for (int64_t i = lane; i < n; i += 32) {
      const float v = load(xr[i]);
      m = fmaxf(m, v);
      has_nan |= v != v;
    }
    m = warp_max(m);
    // fmaxf skips NaN; the CPU's maximum is NaN then, and so is the whole row.
    if (__any_sync(0xffffffffu, has_nan)) m = NAN;
    float s = 0.0f;
    for (int64_t i = lane; i < n; i += 32) s += expf(load(xr[i]) - m);
    const float inv = 1.0f / warp_sum(s);
    for (int64_t i = lane; i < n; i += 32) yr[i] = store<T>(expf(load(xr[i]) - m) * inv);
  }
}

template <class T>
__global__ void softmax_backward_rows(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx,
                                      int64_t rows, int64_t n) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5); r < rows; r += warps) {
    const T* gr = dy + r * n;
    const T* yr = y + r * n;
    T* dr = dx + r * n;
    float dot = 0.0f;
    for (int64_t i = lane; i < n; i += 32) dot += load(gr[i]) * load(yr[i]);
    dot = warp_sum(dot);
    for (int64_t i = lane; i < n; i += 32) dr[i] = store<T>(load(yr[i]) * (load(gr[i]) - dot));
  }
}

// One thread per (outer, inner) column; the axis is strided by `inner`.
template <class T>
__global__ void softmax_forward_columns(const T* __restrict__ x, T* __restrict__ y, int64_t outer, int64_t size,
                                        int64_t inner) {
  const int64_t columns = outer * inner;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; col < columns; col += step) {
    const int64_t o = col / inner, j = col - o * inner;
    const int64_t base = o * size * inner + j;
    float m = -INFINITY;
    bool has_nan = false;
    for (int64_t k = 0; k < size; ++k) {
      const float v = load(x[base + k * inner]);
      m = fmaxf(m, v);
      has_nan |= v != v;
    }
    if (has_nan) m = NAN;
    float s = 0.0f;
    for (int64_t k = 0; k < size; ++k) s += expf(load(x[base + k * inner]) - m);
    const float inv = 1.0f / s;
    for (int64_t k = 0; k < size; ++k) y[base + k * inner] = store<T>(expf(load(x[base + k * inner]) - m) * inv);
  }
}

template <class T>
__global__ void softmax_backward_columns(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx,
                                         int64_t outer, int64_t size, int64_t inner) {
  const int64_t columns = outer * inner;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; col < columns; col += step) {
    const int64_t o = col / inner, j = col - o * inner;
    const int64_t base = o * size * inner + j;
    float dot = 0.0f;
    for (int64_t k = 0; k < size; ++k) dot += load(dy[base + k * inner]) * load(y[base + k * inner]);
    for (int64_t k = 0; k < size; ++k) {
      const int64_t at = base + k * inner;
      dx[at] = store<T>(load(y[at]) * (load(dy[at]) - dot));
    }
  }
}

void softmax_forward_cuda(const SoftmaxForwardArgs& a) {
  if (a.outer <= 0 || a.size <= 0 || a.inner <= 0) return;
  const cudaStream_t stream = current_stream();
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, "softmax_forward", T, {
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    if (a.inner == 1) {
      softmax_forward_rows<T><<<row_blocks(a.outer), kThreads, 0, stream>>>(x, y, a.outer, a.size);
    } else {
      softmax_forward_columns<T><<<grid_size(a.outer * a.inner), kThreads, 0, stream>>>(x, y, a.outer, a.size,
                                                                                         a.inner);
    }
  });
  check_launch("softmax_forward");
}

void softmax_backward_cuda(const SoftmaxBackwardArgs& a) {
  if (a.outer <= 0 || a.size <= 0 || a.inner <= 0) return;
  const cudaStream_t stream = current_stream();
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, "softmax_backward", T, {
    const T* dy = static_cast<const T*>(a.dy);
    const T* y = static_cast<const T*>(a.y);
    T* dx = static_cast<T*>(a.dx);
    if (a.inner == 1) {
      softmax_backward_rows<T><<<row_blocks(a.outer), kThreads, 0, stream>>>(dy, y, dx, a.outer, a.size);
    } else {
      softmax_backward_columns<T><<<grid_size(a.outer * a.inner), kThreads, 0, stream>>>(dy, y, dx, a.outer,
                                                                                          a.size, a.inner);
    }
  });
  check_launch("softmax_backward");
}

}  // namespace

IMPRINT_REGISTER_KERNEL(softmax_forward, CUDA, SoftmaxForwardArgs, softmax_forward_cuda);
IMPRINT_REGISTER_KERNEL(softmax_backward, CUDA, SoftmaxBackwardArgs, softmax_backward_cuda);

}  // namespace cuda
}  // namespace imprint
