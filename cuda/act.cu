// Element-wise activations on the GPU: SiLU, GELU (exact erf form), CLIP's
// quick-GELU, GEGLU and scale, forward and backward, with the formulas of
// csrc/cpu/act.cc. Storage may be f32, f16 or bf16; every value is computed in
// f32 and stored rounded to nearest even. One grid-stride thread per element.
#include "core/args/act.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "float_dispatch.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

constexpr float kQuickGeluAlpha = 1.702f;  // CLIP's quick GELU: x·σ(1.702·x)
constexpr float kInvSqrt2Pi = 0.398942280401432678f;

// expf, not __expf: the fast intrinsic loses several ulp that the parity
// tolerances for f32 would notice in the tails.
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
// Φ(x) and φ(x); normcdff keeps full relative accuracy in the negative tail, like the CPU's form.
__device__ __forceinline__ float normal_cdf(float x) { return normcdff(x); }
__device__ __forceinline__ float normal_pdf(float x) { return expf(-0.5f * x * x) * kInvSqrt2Pi; }

struct Silu {
  __device__ float forward(float x) const { return x * sigmoid(x); }
  __device__ float derivative(float x) const {
    const float s = sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
  }
};

struct Gelu {
  __device__ float forward(float x) const { return x * normal_cdf(x); }
  __device__ float derivative(float x) const { return normal_cdf(x) + x * normal_pdf(x); }
};

struct QuickGelu {
  __device__ float forward(float x) const { return x * sigmoid(kQuickGeluAlpha * x); }
  __device__ float derivative(float x) const {
    const float ax = kQuickGeluAlpha * x;
    const float s = sigmoid(ax);
    return s + ax * (s * (1.0f - s));
  }
};

template <class T, class F>
__global__ void act_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, F f) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    y[i] = store<T>(f.forward(load(x[i])));
  }
}

template <class T, class F>
__global__ void act_backward_kernel(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx, int64_t n,
                                    F f) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    dx[i] = store<T>(load(dy[i]) * f.derivative(load(x[i])));
  }
}

// Rows of x are [value | gate]: y = value·gelu(gate). One thread per output.
template <class T>
__global__ void geglu_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t features) {
  const int64_t n = rows * features;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t r = i / features, j = i - r * features;
    const float value = load(x[r * 2 * features + j]);
    const float gate = load(x[r * 2 * features + features + j]);
    y[i] = store<T>(value * (gate * normal_cdf(gate)));
  }
}

// d value = dy·gelu(gate), d gate = dy·value·gelu'(gate).
template <class T>
__global__ void geglu_backward_kernel(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx,
                                      int64_t rows, int64_t features) {
  const int64_t n = rows * features;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t r = i / features, j = i - r * features;
    const int64_t value_at = r * 2 * features + j, gate_at = value_at + features;
    const float g = load(dy[i]);
    const float value = load(x[value_at]);
    const float gate = load(x[gate_at]);
    const float cdf = normal_cdf(gate);
    dx[value_at] = store<T>(g * (gate * cdf));
    dx[gate_at] = store<T>(g * value * (cdf + gate * normal_pdf(gate)));
  }
}

template <class T>
__global__ void scale_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, float factor) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    y[i] = store<T>(load(x[i]) * factor);
  }
}

template <class F>
void run_forward(const char* op, const ActForwardArgs& a) {
  if (a.numel <= 0) return;
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, op, T, {
    act_forward_kernel<T, F><<<grid_size(a.numel), kThreads, 0, current_stream()>>>(
        static_cast<const T*>(a.x), static_cast<T*>(a.y), a.numel, F{});
  });
  check_launch(op);
}

template <class F>
void run_backward(const char* op, const ActBackwardArgs& a) {
  if (a.numel <= 0) return;
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, op, T, {
    act_backward_kernel<T, F><<<grid_size(a.numel), kThreads, 0, current_stream()>>>(
        static_cast<const T*>(a.dy), static_cast<const T*>(a.x), static_cast<T*>(a.dx), a.numel, F{});
  });
  check_launch(op);
}

void silu_forward_cuda(const ActForwardArgs& a) { run_forward<Silu>("silu_forward", a); }
void silu_backward_cuda(const ActBackwardArgs& a) { run_backward<Silu>("silu_backward", a); }
void gelu_forward_cuda(const ActForwardArgs& a) { run_forward<Gelu>("gelu_forward", a); }
void gelu_backward_cuda(const ActBackwardArgs& a) { run_backward<Gelu>("gelu_backward", a); }
void quick_gelu_forward_cuda(const ActForwardArgs& a) { run_forward<QuickGelu>("quick_gelu_forward", a); }
void quick_gelu_backward_cuda(const ActBackwardArgs& a) { run_backward<QuickGelu>("quick_gelu_backward", a); }

void geglu_forward_cuda(const GegluForwardArgs& a) {
  const int64_t n = a.rows * a.features;
  if (n <= 0) return;
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, "geglu_forward", T, {
    geglu_forward_kernel<T><<<grid_size(n), kThreads, 0, current_stream()>>>(static_cast<const T*>(a.x),
                                                                            static_cast<T*>(a.y), a.rows, a.features);
  });
  check_launch("geglu_forward");
}

void geglu_backward_cuda(const GegluBackwardArgs& a) {
  const int64_t n = a.rows * a.features;
  if (n <= 0) return;
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, "geglu_backward", T, {
    geglu_backward_kernel<T><<<grid_size(n), kThreads, 0, current_stream()>>>(
        static_cast<const T*>(a.dy), static_cast<const T*>(a.x), static_cast<T*>(a.dx), a.rows, a.features);
  });
  check_launch("geglu_backward");
}

void scale_forward_cuda(const ScaleArgs& a) {
  if (a.numel <= 0) return;
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, "scale_forward", T, {
    scale_kernel<T><<<grid_size(a.numel), kThreads, 0, current_stream()>>>(
        static_cast<const T*>(a.x), static_cast<T*>(a.y), a.numel, static_cast<float>(a.factor));
  });
  check_launch("scale_forward");
}

}  // namespace

IMPRINT_REGISTER_KERNEL(silu_forward, CUDA, ActForwardArgs, silu_forward_cuda);
IMPRINT_REGISTER_KERNEL(silu_backward, CUDA, ActBackwardArgs, silu_backward_cuda);
IMPRINT_REGISTER_KERNEL(gelu_forward, CUDA, ActForwardArgs, gelu_forward_cuda);
IMPRINT_REGISTER_KERNEL(gelu_backward, CUDA, ActBackwardArgs, gelu_backward_cuda);
IMPRINT_REGISTER_KERNEL(quick_gelu_forward, CUDA, ActForwardArgs, quick_gelu_forward_cuda);
IMPRINT_REGISTER_KERNEL(quick_gelu_backward, CUDA, ActBackwardArgs, quick_gelu_backward_cuda);
IMPRINT_REGISTER_KERNEL(geglu_forward, CUDA, GegluForwardArgs, geglu_forward_cuda);
IMPRINT_REGISTER_KERNEL(geglu_backward, CUDA, GegluBackwardArgs, geglu_backward_cuda);
IMPRINT_REGISTER_KERNEL(scale_forward, CUDA, ScaleArgs, scale_forward_cuda);

}  // namespace cuda
}  // namespace imprint
