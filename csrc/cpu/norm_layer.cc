// layer_norm on the CPU over the last dimension: rows are independent, so
// they are the parallel tasks; the parameter gradients, which sum over every
// row, are summed per fixed part of the rows and the parts added in order
// (the result does not depend on the thread count).
//   y = (x − μ)·rstd·w + b
//   dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·w, x̂ = (x − μ)·rstd
//   dw = Σ_rows dy·x̂, db = Σ_rows dy
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/args/norm.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/nn_util.h"
#include "cpu/norm_stats.h"

namespace imprint {
namespace cpu {
namespace {

// The parameter gradients are summed in at most kParts parts of at least
// kPartRows rows; within a part, float sums over kFlushRows rows go to double.
constexpr int64_t kParts = 32;
constexpr int64_t kPartRows = 32;
constexpr int64_t kFlushRows = 32;

// The weight, or ones when there is none: one code path for both.
std::vector<float> weight_or_ones(const float* w, int64_t d) {
  return w ? std::vector<float>(w, w + d) : std::vector<float>(d, 1.0f);
}

// Normalises rows [r0, r1) and saves their statistics; w and b have d values
// (V: the SIMD lane type).
template <class V>
IMPRINT_NORM_INLINE void forward_rows(const LayerNormForwardArgs& a, const float* __restrict w,
                                      const float* __restrict b, int64_t r0, int64_t r1) {
  const int64_t d = a.d;
  for (int64_t r = r0; r < r1; ++r) {
    const float* __restrict xr = static_cast<const float*>(a.x) + r * d;
    float* __restrict yr = static_cast<float*>(a.y) + r * d;
    const Moments m = moments<V>(xr, d);
    const double var = m.count > 0 ? m.m2 / m.count : 0.0;
    const double rstd = 1.0 / std::sqrt(var + a.eps);
    static_cast<float*>(a.mean)[r] = static_cast<float>(m.mean);
    static_cast<float*>(a.rstd)[r] = static_cast<float>(rstd);
    // The mean as hi + lo floats: x − hi is exact near the mean, so outputs
    // keep their precision when |mean| is far larger than the spread.
    const float mean_hi = static_cast<float>(m.mean);
    const float scale = static_cast<float>(rstd);
    const float shift = static_cast<float>(-(m.mean - mean_hi) * rstd);
    for (int64_t j = 0; j < d; ++j) yr[j] = ((xr[j] - mean_hi) * scale + shift) * w[j] + b[j];
  }
}

// Float sums of one part's rows since the last flush, and the part's double totals.
struct ParamSums {
  float* acc_w;     // Σ dy·x̂ [d]
  float* acc_b;     // Σ dy [d]
  double* total_w;  // [d]
  double* total_b;  // [d]
};

// dx for rows [r0, r1), and the rows' parameter-gradient sums when `sums.acc_w` is set.
template <class V>
IMPRINT_NORM_INLINE void backward_rows(const LayerNormBackwardArgs& a, const float* __restrict w, int64_t r0,
                                       int64_t r1, ParamSums sums) {
  const int64_t d = a.d;
  const double inv_d = d > 0 ? 1.0 / static_cast<double>(d) : 0.0;
  float* __restrict acc_w = sums.acc_w;
  float* __restrict acc_b = sums.acc_b;
  for (int64_t r = r0; r < r1; ++r) {
    const float* __restrict xr = static_cast<const float*>(a.x) + r * d;
    const float* __restrict dyr = static_cast<const float*>(a.dy) + r * d;
    float* __restrict dxr = static_cast<float*>(a.dx) + r * d;
    const float mu = static_cast<const float*>(a.mean)[r];
    const double rs = static_cast<const float*>(a.rstd)[r];
    const GradSums s = grad_sums<V, true>(xr, dyr, w, d, mu);
    // The exact mean is mu + delta; mu is the f32-rounded one.
    const double delta = s.dev * inv_d;
    const double mean_g = s.g * inv_d;
    const double mean_g_xhat = rs * (s.g_dev - delta * s.g) * inv_d;
    // dx = r·w·dy − r·mean_g − r²·mean_g_xhat·((x − mu) − delta)
    const float k1 = static_cast<float>(-rs * rs * mean_g_xhat);
    const float k0 = static_cast<float>(-rs * mean_g + delta * rs * rs * mean_g_xhat);
    const float r_f = static_cast<float>(rs);
    if (!acc_w) {
      for (int64_t j = 0; j < d; ++j) dxr[j] = r_f * w[j] * dyr[j] + k1 * (xr[j] - mu) + k0;
      continue;
    }
    // x̂ = (x − mu)·rstd − delta·rstd
    const float xhat_shift = static_cast<float>(-delta * rs);
    for (int64_t j = 0; j < d; ++j) {
      const float dev = xr[j] - mu;
      dxr[j] = r_f * w[j] * dyr[j] + k1 * dev + k0;
      acc_w[j] += dyr[j] * (dev * r_f + xhat_shift);
      acc_b[j] += dyr[j];
    }
    if ((r - r0 + 1) % kFlushRows == 0 || r + 1 == r1) {
      for (int64_t j = 0; j < d; ++j) {
        sums.total_w[j] += acc_w[j];
        sums.total_b[j] += acc_b[j];
        acc_w[j] = 0.0f;
        acc_b[j] = 0.0f;
      }
    }
  }
}

// Each kernel is compiled for AVX2 + FMA and for any CPU; dispatch_* picks one (see norm_stats.h).
#if IMPRINT_NORM_AVX2
IMPRINT_NORM_AVX2_TARGET void forward_rows_avx2(const LayerNormForwardArgs& a, const float* w, const float* b,
                                                int64_t r0, int64_t r1) {
  forward_rows<f32x8>(a, w, b, r0, r1);
}
IMPRINT_NORM_AVX2_TARGET void backward_rows_avx2(const LayerNormBackwardArgs& a, const float* w, int64_t r0,
                                                 int64_t r1, ParamSums sums) {
  backward_rows<f32x8>(a, w, r0, r1, sums);
}
#endif

void dispatch_forward_rows(const LayerNormForwardArgs& a, const float* w, const float* b, int64_t r0, int64_t r1) {
#if IMPRINT_NORM_AVX2
  if (norm_use_avx2()) return forward_rows_avx2(a, w, b, r0, r1);
#endif
  forward_rows<f32x4>(a, w, b, r0, r1);
}

void dispatch_backward_rows(const LayerNormBackwardArgs& a, const float* w, int64_t r0, int64_t r1, ParamSums sums) {
#if IMPRINT_NORM_AVX2
  if (norm_use_avx2()) return backward_rows_avx2(a, w, r0, r1, sums);
#endif
  backward_rows<f32x4>(a, w, r0, r1, sums);
}

void layer_norm_forward_cpu(const LayerNormForwardArgs& a) {
  require_f32("layer_norm_forward", a.dtype);
  const std::vector<float> weight = weight_or_ones(static_cast<const float*>(a.weight), a.d);
  const float* b = static_cast<const float*>(a.bias);
  const std::vector<float> bias = b ? std::vector<float>(b, b + a.d) : std::vector<float>(a.d, 0.0f);
  parallel_for(a.rows, std::max<int64_t>(1, kNormTaskGrain / std::max<int64_t>(a.d, 1)),
               [&](int64_t r0, int64_t r1) { dispatch_forward_rows(a, weight.data(), bias.data(), r0, r1); });
}

void layer_norm_backward_cpu(const LayerNormBackwardArgs& a) {
  require_f32("layer_norm_backward", a.dtype);
  const std::vector<float> weight = weight_or_ones(static_cast<const float*>(a.weight), a.d);
  float* dw = static_cast<float*>(a.dweight);
  float* db = static_cast<float*>(a.dbias);
  const int64_t d = a.d;
  const bool param_grads = dw || db;
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(kParts, a.rows / kPartRows));
  // Per part: Σ dy·x̂ in [0, d), Σ dy in [d, 2d).
  std::vector<double> part_sums(param_grads ? parts * 2 * d : 0, 0.0);

  parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
    // This task's float sums over the rows since the last flush.
    std::vector<float> acc(param_grads ? 2 * d : 0, 0.0f);
    for (int64_t p = p0; p < p1; ++p) {
      const ParamSums sums = param_grads ? ParamSums{acc.data(), acc.data() + d, part_sums.data() + p * 2 * d,
                                                     part_sums.data() + p * 2 * d + d}
                                         : ParamSums{nullptr, nullptr, nullptr, nullptr};
      dispatch_backward_rows(a, weight.data(), a.rows * p / parts, a.rows * (p + 1) / parts, sums);
    }
  });

  if (!param_grads) return;
  for (int64_t j = 0; j < d; ++j) {
    double acc_w = 0, acc_b = 0;
    for (int64_t p = 0; p < parts; ++p) {
      acc_w += part_sums[p * 2 * d + j];
      acc_b += part_sums[p * 2 * d + d + j];
    }
    if (dw) dw[j] = static_cast<float>(acc_w);
    if (db) db[j] = static_cast<float>(acc_b);
  }
}

}  // namespace

IMPRINT_REGISTER_KERNEL(layer_norm_forward, CPU, LayerNormForwardArgs, layer_norm_forward_cpu);
IMPRINT_REGISTER_KERNEL(layer_norm_backward, CPU, LayerNormBackwardArgs, layer_norm_backward_cpu);

}  // namespace cpu
}  // namespace imprint
