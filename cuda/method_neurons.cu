// Cones' concept-neuron kernels on the GPU, the twins of
// csrc/cpu/method_neurons.cc: the fused gradient-statistic step (one
// grid-stride pass), and shutting/restoring neurons at sorted flat indices
// (a copy of the weight, then one thread per index; indices are unique and
// were checked by the op, so no two threads touch one element).
#include "core/args/method.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

// The CPU's f32 operations in its order, each rounded (__f*_rn: no FMA contraction).
template <class T>
__global__ void stat_step_kernel(const T* __restrict__ theta, const T* __restrict__ grad, const float* __restrict__ stat,
                                 T* __restrict__ theta_out, float* __restrict__ stat_out, int64_t numel, float rho) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel; i += stride) {
    const float t = load(theta[i]), g = load(grad[i]);
    stat_out[i] = __fadd_rn(stat[i], __fmul_rn(t, g));
    const float step = __fmul_rn(__fmul_rn(__fmul_rn(rho, t), t), g);
    theta_out[i] = store<T>(__fsub_rn(t, step));
  }
}

template <class T>
void launch_stat_step(const NeuronStatStepArgs& a, cudaStream_t stream) {
  stat_step_kernel<T><<<grid_size(a.numel), kThreads, 0, stream>>>(
      static_cast<const T*>(a.theta), static_cast<const T*>(a.grad), a.stat, static_cast<T*>(a.theta_out), a.stat_out,
      a.numel, static_cast<float>(a.rho));
}

void neuron_stat_step_cuda(const NeuronStatStepArgs& a) {
  if (a.numel == 0) return;
  cudaStream_t stream = current_stream();
  switch (a.dtype) {
    case DType::F32: launch_stat_step<float>(a, stream); break;
    case DType::F16: launch_stat_step<f16>(a, stream); break;
    case DType::BF16: launch_stat_step<bf16>(a, stream); break;
    default: fail(ErrorCode::DtypeMismatch, "neuron_stat_step: theta must be f32, f16 or bf16");
  }
  check_launch("neuron_stat_step");
}

// Elements as raw words of their size (a mask moves values, never computes).
template <class W>
__global__ void mask_apply_kernel(const W* __restrict__ weight, const int64_t* __restrict__ indices,
                                  W* __restrict__ saved, W* __restrict__ weight_out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t at = indices[i];
    saved[i] = weight[at];
    weight_out[at] = W(0);  // all-zero bits: +0 in f32, f16 and bf16
  }
}

template <class W>
__global__ void mask_restore_kernel(const int64_t* __restrict__ indices, const W* __restrict__ saved,
                                    W* __restrict__ weight_out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    weight_out[indices[i]] = saved[i];
  }
}

template <class W>
void launch_mask(const NeuronMaskArgs& a, cudaStream_t stream) {
  if (a.saved_out) {
    mask_apply_kernel<W><<<grid_size(a.n), kThreads, 0, stream>>>(static_cast<const W*>(a.weight), a.indices,
                                                                   static_cast<W*>(a.saved_out),
                                                                   static_cast<W*>(a.weight_out), a.n);
  } else {
    mask_restore_kernel<W><<<grid_size(a.n), kThreads, 0, stream>>>(a.indices, static_cast<const W*>(a.saved_in),
                                                                     static_cast<W*>(a.weight_out), a.n);
  }
}

void neuron_mask_cuda(const NeuronMaskArgs& a) {
  cudaStream_t stream = current_stream();
  const size_t elem = dtype_size(a.dtype);
  if (a.numel > 0) {
    IMPRINT_CUDA_CHECK(cudaMemcpyAsync(a.weight_out, a.weight, static_cast<size_t>(a.numel) * elem,
                                       cudaMemcpyDeviceToDevice, stream));
  }
  if (a.n == 0) return;
  if (elem == 4) {
    launch_mask<uint32_t>(a, stream);
  } else if (elem == 2) {
    launch_mask<uint16_t>(a, stream);
  } else {
    fail(ErrorCode::DtypeMismatch, "neuron_mask: weight must be f32, f16 or bf16");
  }
  check_launch(a.saved_out ? "neuron_mask_apply" : "neuron_mask_restore");
}

}  // namespace

IMPRINT_REGISTER_KERNEL(neuron_stat_step, CUDA, NeuronStatStepArgs, neuron_stat_step_cuda);
IMPRINT_REGISTER_KERNEL(neuron_mask_apply, CUDA, NeuronMaskArgs, neuron_mask_cuda);
IMPRINT_REGISTER_KERNEL(neuron_mask_restore, CUDA, NeuronMaskArgs, neuron_mask_cuda);

}  // namespace cuda
}  // namespace imprint
