// One AdamW step on the CPU into new tensors, following PyTorch's arithmetic
// with the f32 scalars the plan derived (AdamwScalars, core/args/adamw.h).
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/args/adamw.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/element.h"
#include "cpu/nn_util.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace imprint {
namespace cpu {
namespace {

constexpr int64_t kGrain = 1 << 15;

// Elements [0, n) of one chunk. std::sqrt may set errno, so compilers keep it
// scalar (a libm call on the slow path); the SSE2 loop does the same f32
// operations in the same order four at a time, and the scalar loop the rest.
void adamw_range(const float* p, const float* g, const float* m, const float* v, float* p_out, float* m_out,
                 float* v_out, int64_t n, const AdamwScalars s) {
  int64_t i = 0;
#if defined(__SSE2__)
  const __m128 b1 = _mm_set1_ps(s.b1), omb1 = _mm_set1_ps(s.one_minus_b1);
  const __m128 b2 = _mm_set1_ps(s.b2), omb2 = _mm_set1_ps(s.one_minus_b2);
  const __m128 decay = _mm_set1_ps(s.decay), neg_step = _mm_set1_ps(s.neg_step_size);
  const __m128 bc2_sqrt = _mm_set1_ps(s.bc2_sqrt), eps = _mm_set1_ps(s.eps);
  for (; i + 4 <= n; i += 4) {
    const __m128 gi = _mm_loadu_ps(g + i);
    const __m128 mi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(m + i), b1), _mm_mul_ps(omb1, gi));
    const __m128 vi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(v + i), b2), _mm_mul_ps(_mm_mul_ps(omb2, gi), gi));
    const __m128 denom = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vi), bc2_sqrt), eps);
    _mm_storeu_ps(p_out + i, _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(p + i), decay), _mm_mul_ps(neg_step, _mm_div_ps(mi, denom))));
    _mm_storeu_ps(m_out + i, mi);
    _mm_storeu_ps(v_out + i, vi);
  }
#endif
  for (; i < n; ++i) {
    const float gi = g[i];
    const float mi = m[i] * s.b1 + s.one_minus_b1 * gi;
    const float vi = v[i] * s.b2 + s.one_minus_b2 * gi * gi;
    const float denom = std::sqrt(vi) / s.bc2_sqrt + s.eps;
    p_out[i] = p[i] * s.decay + s.neg_step_size * (mi / denom);
    m_out[i] = mi;
    v_out[i] = vi;
  }
}

// Elements [i0, i0 + n) of a float tensor `src` of `dtype` as f32, and back.
void load_f32(DType dtype, const void* src, int64_t i0, int64_t n, float* dst) {
  IMPRINT_CPU_DISPATCH(dtype, T, {
    load_span(static_cast<const T*>(src) + i0, n, dst);
  });
}

void store_f32(DType dtype, const float* src, int64_t n, void* dst, int64_t i0) {
  IMPRINT_CPU_DISPATCH(dtype, T, {
    if constexpr (std::is_same_v<typename Compute<T>::type, float>) {
      T* d = static_cast<T*>(dst) + i0;
      for (int64_t k = 0; k < n; ++k) d[k] = store<T>(src[k]);
    }
  });
}

// torch.optim.AdamW (single-tensor path), with its scalars rounded to f32 as
// PyTorch does when it applies a Python float to an f32 tensor:
//   p ← p·(1 − lr·wd);  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)
// (the scalars come in a.scalars, derived once by the plan for every device).
void adamw_step_cpu(const AdamwStepArgs& a) {
  require_f32("adamw_step", a.dtype);
  const float* p = static_cast<const float*>(a.param);
  const float* g = static_cast<const float*>(a.grad);  // read as f32 only when grad_dtype is f32
  const float* m = static_cast<const float*>(a.exp_avg);
  const float* v = static_cast<const float*>(a.exp_avg_sq);
  float* p_out = static_cast<float*>(a.param_out);
  float* m_out = static_cast<float*>(a.exp_avg_out);
  float* v_out = static_cast<float*>(a.exp_avg_sq_out);
  const AdamwScalars s = a.scalars;
  const bool mixed = a.grad_dtype != DType::F32 || a.param_copy_out != nullptr;
  parallel_for(a.numel, kGrain, [&](int64_t i0, int64_t i1) {
    if (!mixed) return adamw_range(p + i0, g + i0, m + i0, v + i0, p_out + i0, m_out + i0, v_out + i0, i1 - i0, s);
    // Mixed precision: the grad widened to f32 a slice at a time, the copy rounded from the new f32 param.
    constexpr int64_t kSlice = 1024;
    float g32[kSlice];
    for (int64_t b = i0; b < i1; b += kSlice) {
      const int64_t n = std::min(kSlice, i1 - b);
      load_f32(a.grad_dtype, a.grad, b, n, g32);
      adamw_range(p + b, g32, m + b, v + b, p_out + b, m_out + b, v_out + b, n, s);
      if (a.param_copy_out != nullptr) store_f32(a.copy_dtype, p_out + b, n, a.param_copy_out, b);
    }
  });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(adamw_step, CPU, AdamwStepArgs, adamw_step_cpu);

}  // namespace cpu
}  // namespace imprint
