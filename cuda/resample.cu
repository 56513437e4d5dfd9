// Nearest-neighbour resizing on the GPU (csrc/cpu/resample.cc is the
// reference): any size, and the exact 2x of the UNet's and VAE's upsamplers.
// The backwards are gathers, one thread per dx element summing the dy entries
// that read it in the CPU's order, so they need no atomics and match it bit
// for bit in f32.
#include <string>
#include <type_traits>

#include "core/args/resample.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "float_dispatch.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

// PyTorch's nearest index, as the CPU's source_index: exact for the same size
// and for 2x, else floor(o·scale) with the f32 scale in/out. Non-decreasing in o.
__device__ __forceinline__ int64_t source_index(int64_t o, int64_t in, int64_t out, float scale) {
  if (in == out) return o;
  if (out == 2 * in) return o >> 1;
  const int64_t s = static_cast<int64_t>(floorf(__fmul_rn(static_cast<float>(o), scale)));
  return s < in - 1 ? s : in - 1;
}

// The first output index in [0, out] whose source index is at least v
// (binary search; source_index is monotone).
__device__ __forceinline__ int64_t first_reader(int64_t v, int64_t in, int64_t out, float scale) {
  int64_t lo = 0, hi = out;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (source_index(mid, in, out, scale) >= v) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

template <class T>
__global__ void nearest_forward(const T* x, T* y, int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h,
                                int64_t out_w, float scale_h, float scale_w) {
  const int64_t total = planes * out_h * out_w;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t j = e % out_w;
    const int64_t i = (e / out_w) % out_h;
    const int64_t p = e / (out_w * out_h);
    y[e] = x[(p * in_h + source_index(i, in_h, out_h, scale_h)) * in_w + source_index(j, in_w, out_w, scale_w)];
  }
}

// dx[p, r, c] = Σ dy[p, i, j] over the output rows i reading r and columns j
// reading c, added in f32 row by row, left to right, as the CPU adds them.
template <class T>
__global__ void nearest_backward(const T* dy, T* dx, int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h,
                                 int64_t out_w, float scale_h, float scale_w) {
  const int64_t total = planes * in_h * in_w;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t c = e % in_w;
    const int64_t r = (e / in_w) % in_h;
    const int64_t p = e / (in_w * in_h);
    const int64_t i0 = first_reader(r, in_h, out_h, scale_h), i1 = first_reader(r + 1, in_h, out_h, scale_h);
    const int64_t j0 = first_reader(c, in_w, out_w, scale_w), j1 = first_reader(c + 1, in_w, out_w, scale_w);
    const T* plane = dy + p * out_h * out_w;
    float acc = 0.0f;
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = j0; j < j1; ++j) acc = __fadd_rn(acc, load(plane[i * out_w + j]));
    dx[e] = store<T>(acc);
  }
}

// Output row R (of all planes' rows) copies input row R / 2, each column twice.
template <class T>
__global__ void nearest2x_forward(const T* x, T* y, int64_t rows_out, int64_t w) {
  const int64_t w2 = 2 * w, total = rows_out * w2;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = e / w2, col = e - row * w2;
    y[e] = x[(row >> 1) * w + (col >> 1)];
  }
}

// dx[r, j] = ((top[2j] + top[2j+1]) + bottom[2j]) + bottom[2j+1], the CPU's order.
template <class T>
__global__ void nearest2x_backward(const T* dy, T* dx, int64_t rows_in, int64_t w) {
  const int64_t total = rows_in * w;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = e / w, j = e - r * w;
    const T* top = dy + r * 4 * w;
    const T* bottom = top + 2 * w;
    float s = __fadd_rn(load(top[2 * j]), load(top[2 * j + 1]));
    s = __fadd_rn(s, load(bottom[2 * j]));
    s = __fadd_rn(s, load(bottom[2 * j + 1]));
    dx[e] = store<T>(s);
  }
}

// The f32 scale in/out, computed on the host exactly as the CPU does.
float nearest_scale(int64_t in, int64_t out) { return static_cast<float>(in) / static_cast<float>(out); }

template <class T>
void nearest_typed(const UpsampleNearestArgs& a, bool backward) {
  const float sh = nearest_scale(a.in_h, a.out_h), sw = nearest_scale(a.in_w, a.out_w);
  if (backward) {
    nearest_backward<<<grid_size(a.planes * a.in_h * a.in_w), kThreads, 0, current_stream()>>>(
        static_cast<const T*>(a.src), static_cast<T*>(a.dst), a.planes, a.in_h, a.in_w, a.out_h, a.out_w, sh, sw);
    check_launch("upsample_nearest_backward");
  } else {
    nearest_forward<<<grid_size(a.planes * a.out_h * a.out_w), kThreads, 0, current_stream()>>>(
        static_cast<const T*>(a.src), static_cast<T*>(a.dst), a.planes, a.in_h, a.in_w, a.out_h, a.out_w, sh, sw);
    check_launch("upsample_nearest_forward");
  }
}

template <class T>
void nearest2x_typed(const UpsampleNearest2xArgs& a, bool backward) {
  if (backward) {
    nearest2x_backward<<<grid_size(a.planes * a.h * a.w), kThreads, 0, current_stream()>>>(
        static_cast<const T*>(a.src), static_cast<T*>(a.dst), a.planes * a.h, a.w);
    check_launch("upsample_nearest2x_backward");
  } else {
    nearest2x_forward<<<grid_size(a.planes * a.h * 4 * a.w), kThreads, 0, current_stream()>>>(
        static_cast<const T*>(a.src), static_cast<T*>(a.dst), a.planes * a.h * 2, a.w);
    check_launch("upsample_nearest2x_forward");
  }
}

void upsample_nearest_forward_cuda(const UpsampleNearestArgs& a) {
  require_float("upsample_nearest_forward", a.dtype);
  if (a.planes * a.out_h * a.out_w == 0) return;
  IMPRINT_CUDA_DISPATCH(a.dtype, T, if constexpr (is_float_type<T>) nearest_typed<T>(a, false));
}

void upsample_nearest_backward_cuda(const UpsampleNearestArgs& a) {
  require_float("upsample_nearest_backward", a.dtype);
  if (a.planes * a.in_h * a.in_w == 0) return;
  IMPRINT_CUDA_DISPATCH(a.dtype, T, if constexpr (is_float_type<T>) nearest_typed<T>(a, true));
}

void upsample_nearest2x_forward_cuda(const UpsampleNearest2xArgs& a) {
  require_float("upsample_nearest2x_forward", a.dtype);
  if (a.planes * a.h * a.w == 0) return;
  IMPRINT_CUDA_DISPATCH(a.dtype, T, if constexpr (is_float_type<T>) nearest2x_typed<T>(a, false));
}

void upsample_nearest2x_backward_cuda(const UpsampleNearest2xArgs& a) {
  require_float("upsample_nearest2x_backward", a.dtype);
  if (a.planes * a.h * a.w == 0) return;
  IMPRINT_CUDA_DISPATCH(a.dtype, T, if constexpr (is_float_type<T>) nearest2x_typed<T>(a, true));
}

}  // namespace
}  // namespace cuda

IMPRINT_REGISTER_KERNEL(upsample_nearest_forward, CUDA, UpsampleNearestArgs, cuda::upsample_nearest_forward_cuda);
IMPRINT_REGISTER_KERNEL(upsample_nearest_backward, CUDA, UpsampleNearestArgs, cuda::upsample_nearest_backward_cuda);
IMPRINT_REGISTER_KERNEL(upsample_nearest2x_forward, CUDA, UpsampleNearest2xArgs, cuda::upsample_nearest2x_forward_cuda);
IMPRINT_REGISTER_KERNEL(upsample_nearest2x_backward, CUDA, UpsampleNearest2xArgs, cuda::upsample_nearest2x_backward_cuda);

}  // namespace imprint
