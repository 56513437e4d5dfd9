// Cones' concept-neuron kernels on the CPU (DESIGN.md §1.2): the fused
// gradient-statistic step, and shutting neurons (zeroing weights at sorted
// flat indices, keeping their values) and restoring them. f32/f16/bf16
// weights; cuda/method_neurons.cu mirrors them.
#include <algorithm>
#include <cstring>

#include "core/args/method.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/element.h"

namespace imprint {
namespace cpu {
namespace {

constexpr int64_t kGrain = 1 << 15;

// stat += θ·g and θ ← θ − ρ·θ·θ·g, each product and sum rounded to f32 in this
// order (the CUDA kernel uses the same rounded operations, without FMA).
template <class T>
void stat_step(const NeuronStatStepArgs& a) {
  const T* theta = static_cast<const T*>(a.theta);
  const T* grad = static_cast<const T*>(a.grad);
  T* theta_out = static_cast<T*>(a.theta_out);
  const float rho = static_cast<float>(a.rho);
  parallel_for(a.numel, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float t = load(theta[i]), g = load(grad[i]);
      const float tg = t * g;
      a.stat_out[i] = a.stat[i] + tg;
      const float step = ((rho * t) * t) * g;
      theta_out[i] = store<T>(t - step);
    }
  });
}

void neuron_stat_step_cpu(const NeuronStatStepArgs& a) {
  switch (a.dtype) {
    case DType::F32: stat_step<float>(a); break;
    case DType::F16: stat_step<f16_t>(a); break;
    case DType::BF16: stat_step<bf16_t>(a); break;
    default: fail(ErrorCode::DtypeMismatch, "neuron_stat_step: theta must be f32, f16 or bf16");
  }
}

// weight_out = weight, then the indexed elements zeroed (apply, saving them)
// or put back (restore). Indices are unique, so chunks never share an element.
void neuron_mask(const NeuronMaskArgs& a) {
  const size_t elem = dtype_size(a.dtype);
  const char* src = static_cast<const char*>(a.weight);
  char* dst = static_cast<char*>(a.weight_out);
  parallel_for(a.numel, kGrain * 4, [&](int64_t begin, int64_t end) {
    std::memcpy(dst + begin * elem, src + begin * elem, static_cast<size_t>(end - begin) * elem);
  });
  const char* saved_in = static_cast<const char*>(a.saved_in);
  char* saved_out = static_cast<char*>(a.saved_out);
  parallel_for(a.n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t at = a.indices[i];
      if (saved_out) {
        std::memcpy(saved_out + i * elem, src + at * elem, elem);
        std::memset(dst + at * elem, 0, elem);  // +0 in f32, f16 and bf16
      } else {
        std::memcpy(dst + at * elem, saved_in + i * elem, elem);
      }
    }
  });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(neuron_stat_step, CPU, NeuronStatStepArgs, neuron_stat_step_cpu);
IMPRINT_REGISTER_KERNEL(neuron_mask_apply, CPU, NeuronMaskArgs, neuron_mask);
IMPRINT_REGISTER_KERNEL(neuron_mask_restore, CPU, NeuronMaskArgs, neuron_mask);

}  // namespace cpu
}  // namespace imprint
