// One AdamW step on the GPU (csrc/cpu/adamw.cc is the reference), with the
// f32 scalars the plan derived once for both devices (AdamwScalars,
// core/args/adamw.h). Mixed precision: an f32 master and moments, a grad in
// any float dtype, and the model's f16/bf16 weight written in the same pass.
//
// The f32 arithmetic uses the __f*_rn intrinsics: they are never fused into
// FMAs, so each operation rounds as the CPU's does and AdamW matches the CPU
// bit for bit in f32.
#include <string>
#include <type_traits>

#include "core/args/adamw.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "float_dispatch.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

// The CPU's adamw_range, operation for operation:
//   m ← m·β1 + (1 − β1)·g;  v ← v·β2 + ((1 − β2)·g)·g
//   p ← p·decay + neg_step · (m / (√v / √bc2 + eps))
// T: the state (param, moments); G: the grad; C: the low-precision copy of the
// new param that mixed precision writes beside its f32 master (copy_out non-null).
template <class T, class G, class C>
__global__ void adamw_kernel(const T* p, const G* g, const T* m, const T* v, T* p_out, T* m_out, T* v_out,
                             C* copy_out, int64_t n, AdamwScalars s) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float gi = load(g[i]);
    const float mi = __fadd_rn(__fmul_rn(load(m[i]), s.b1), __fmul_rn(s.one_minus_b1, gi));
    const float vi = __fadd_rn(__fmul_rn(load(v[i]), s.b2), __fmul_rn(__fmul_rn(s.one_minus_b2, gi), gi));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
    const float pi = __fadd_rn(__fmul_rn(load(p[i]), s.decay), __fmul_rn(s.neg_step_size, __fdiv_rn(mi, denom)));
    p_out[i] = store<T>(pi);
    m_out[i] = store<T>(mi);
    v_out[i] = store<T>(vi);
    if (copy_out != nullptr) copy_out[i] = store<C>(pi);
  }
}

template <class T, class G, class C>
void adamw_typed(const AdamwStepArgs& a, const AdamwScalars& s) {
  adamw_kernel<T, G, C><<<grid_size(a.numel), kThreads, 0, current_stream()>>>(
      static_cast<const T*>(a.param), static_cast<const G*>(a.grad), static_cast<const T*>(a.exp_avg),
      static_cast<const T*>(a.exp_avg_sq), static_cast<T*>(a.param_out), static_cast<T*>(a.exp_avg_out),
      static_cast<T*>(a.exp_avg_sq_out), static_cast<C*>(a.param_copy_out), a.numel, s);
  check_launch("adamw_step");
}

void adamw_step_cuda(const AdamwStepArgs& a) {
  require_float("adamw_step", a.dtype);
  if (a.numel == 0) return;
  if (a.grad_dtype == a.dtype && a.param_copy_out == nullptr) {
    IMPRINT_CUDA_DISPATCH(a.dtype, T, if constexpr (is_float_type<T>) adamw_typed<T, T, T>(a, a.scalars));
    return;
  }
  // Mixed precision (the op checked that the state is f32): any float grad, the copy in its dtype.
  const DType copy = a.param_copy_out != nullptr ? a.copy_dtype : DType::F32;
  IMPRINT_CUDA_FLOAT_DISPATCH(a.grad_dtype, "adamw_step", G,
                              IMPRINT_CUDA_FLOAT_DISPATCH(copy, "adamw_step", C, adamw_typed<float, G, C>(a, a.scalars)));
}

}  // namespace
}  // namespace cuda

IMPRINT_REGISTER_KERNEL(adamw_step, CUDA, AdamwStepArgs, cuda::adamw_step_cuda);

}  // namespace imprint
