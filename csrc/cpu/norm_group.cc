// group_norm on the CPU. Each (sample, group) slice [channels/groups, inner] is
// contiguous and independent, so the slices are the parallel tasks.
//   y = (x − μ)·rstd·w + b, rstd = 1/sqrt(var + eps)
//   dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·w, x̂ = (x − μ)·rstd
//   dw = Σ dy·x̂, db = Σ dy (over samples and positions)
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/args/norm.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/act_ranges.h"
#include "cpu/nn_util.h"
#include "cpu/norm_stats.h"

namespace imprint {
namespace cpu {
namespace {

int64_t slices_per_task(int64_t slice) { return std::max<int64_t>(1, kNormTaskGrain / std::max<int64_t>(slice, 1)); }

// Normalises slices [t0, t1) and saves their statistics (V: the SIMD lane type).
// With a.act set (fused SiLU), each channel's row goes through silu while it
// is still in cache; without a.y the row is normalised into a scratch row.
template <class V>
IMPRINT_NORM_INLINE void forward_slices(const GroupNormForwardArgs& a, int64_t t0, int64_t t1) {
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.weight);
  const float* b = static_cast<const float*>(a.bias);
  float* y = static_cast<float*>(a.y);
  float* act = static_cast<float*>(a.act);
  const int64_t per_group = a.c / a.groups;
  const int64_t slice = per_group * a.inner;
  std::vector<float> scratch(y == nullptr ? static_cast<size_t>(a.inner) : 0);
  for (int64_t t = t0; t < t1; ++t) {
    const Moments m = moments<V>(x + t * slice, slice);
    const double var = m.count > 0 ? m.m2 / m.count : 0.0;
    const double rstd = 1.0 / std::sqrt(var + a.eps);
    static_cast<float*>(a.mean)[t] = static_cast<float>(m.mean);
    static_cast<float*>(a.rstd)[t] = static_cast<float>(rstd);
    // The mean as hi + lo floats: x − hi is exact near the mean, so outputs
    // keep their precision when |mean| is far larger than the spread.
    const float mean_hi = static_cast<float>(m.mean);
    const double mean_lo = m.mean - mean_hi;
    const int64_t c0 = (t % a.groups) * per_group;
    for (int64_t ci = 0; ci < per_group; ++ci) {
      const double scale = rstd * (w ? w[c0 + ci] : 1.0);
      const float scale_f = static_cast<float>(scale);
      const float shift_f = static_cast<float>((b ? b[c0 + ci] : 0.0) - mean_lo * scale);
      const int64_t off = t * slice + ci * a.inner;
      const float* __restrict xc = x + off;
      float* __restrict yc = y ? y + off : scratch.data();
      for (int64_t i = 0; i < a.inner; ++i) yc[i] = (xc[i] - mean_hi) * scale_f + shift_f;
      if (act) silu_forward_range(yc, act + off, a.inner);
    }
  }
}

// Per (sample, channel) sums kept for the parameter gradients, or nullptrs.
struct ChannelSums {
  double* dy;        // Σ dy
  double* dy_dev;    // Σ dy·(x − saved mean)
  double* mean_fix;  // per slice: exact mean − saved mean
};

// dx for slices [t0, t1), and their channels' sums when `keep.dy` is set.
template <class V>
IMPRINT_NORM_INLINE void backward_slices(const GroupNormBackwardArgs& a, int64_t t0, int64_t t1, ChannelSums keep) {
  const float* dy = static_cast<const float*>(a.dy);
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.weight);
  float* dx = static_cast<float*>(a.dx);
  const int64_t per_group = a.c / a.groups;
  const int64_t slice = per_group * a.inner;
  const double count = static_cast<double>(slice);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t n = t / a.groups;
    const int64_t c0 = (t % a.groups) * per_group;
    const float mu = static_cast<const float*>(a.mean)[t];
    const double r = static_cast<const float*>(a.rstd)[t];
    // Σ g and Σ g·(x − mu) over the slice, with g = dy·w (w constant per channel).
    double sum_g = 0, sum_g_dev = 0, sum_dev = 0;
    for (int64_t ci = 0; ci < per_group; ++ci) {
      const int64_t off = t * slice + ci * a.inner;
      const GradSums s = grad_sums<V, false>(x + off, dy + off, nullptr, a.inner, mu);
      const double wc = w ? w[c0 + ci] : 1.0;
      sum_g += wc * s.g;
      sum_g_dev += wc * s.g_dev;
      sum_dev += s.dev;
      if (keep.dy) {
        keep.dy[n * a.c + c0 + ci] = s.g;
        keep.dy_dev[n * a.c + c0 + ci] = s.g_dev;
      }
    }
    // The exact mean is mu + delta; mu is the f32-rounded one.
    const double delta = slice > 0 ? sum_dev / count : 0.0;
    if (keep.dy) keep.mean_fix[t] = delta;
    const double mean_g = slice > 0 ? sum_g / count : 0.0;
    const double mean_g_xhat = slice > 0 ? r * (sum_g_dev - delta * sum_g) / count : 0.0;
    // dx = r·w·dy − r·mean_g − r²·mean_g_xhat·((x − mu) − delta)
    const float k1 = static_cast<float>(-r * r * mean_g_xhat);
    const float k0 = static_cast<float>(-r * mean_g + delta * r * r * mean_g_xhat);
    for (int64_t ci = 0; ci < per_group; ++ci) {
      const int64_t off = t * slice + ci * a.inner;
      const float scale = static_cast<float>(r * (w ? w[c0 + ci] : 1.0));
      const float* __restrict dyc = dy + off;
      const float* __restrict xc = x + off;
      float* __restrict dxc = dx + off;
      for (int64_t i = 0; i < a.inner; ++i) dxc[i] = scale * dyc[i] + k1 * (xc[i] - mu) + k0;
    }
  }
}

// Each kernel is compiled for AVX2 + FMA and for any CPU; dispatch_* picks one (see norm_stats.h).
#if IMPRINT_NORM_AVX2
IMPRINT_NORM_AVX2_TARGET void forward_slices_avx2(const GroupNormForwardArgs& a, int64_t t0, int64_t t1) {
  forward_slices<f32x8>(a, t0, t1);
}
IMPRINT_NORM_AVX2_TARGET void backward_slices_avx2(const GroupNormBackwardArgs& a, int64_t t0, int64_t t1,
                                                   ChannelSums keep) {
  backward_slices<f32x8>(a, t0, t1, keep);
}
#endif

void dispatch_forward_slices(const GroupNormForwardArgs& a, int64_t t0, int64_t t1) {
#if IMPRINT_NORM_AVX2
  if (norm_use_avx2()) return forward_slices_avx2(a, t0, t1);
#endif
  forward_slices<f32x4>(a, t0, t1);
}

void dispatch_backward_slices(const GroupNormBackwardArgs& a, int64_t t0, int64_t t1, ChannelSums keep) {
#if IMPRINT_NORM_AVX2
  if (norm_use_avx2()) return backward_slices_avx2(a, t0, t1, keep);
#endif
  backward_slices<f32x4>(a, t0, t1, keep);
}

void group_norm_forward_cpu(const GroupNormForwardArgs& a) {
  require_f32("group_norm_forward", a.dtype);
  const int64_t slice = a.c / a.groups * a.inner;
  parallel_for(a.n * a.groups, slices_per_task(slice),
               [&](int64_t t0, int64_t t1) { dispatch_forward_slices(a, t0, t1); });
}

void group_norm_backward_cpu(const GroupNormBackwardArgs& a) {
  require_f32("group_norm_backward", a.dtype);
  float* dw = static_cast<float*>(a.dweight);
  float* db = static_cast<float*>(a.dbias);
  const int64_t per_group = a.c / a.groups;
  const bool param_grads = dw || db;
  std::vector<double> ch_dy(param_grads ? a.n * a.c : 0), ch_dy_dev(param_grads ? a.n * a.c : 0);
  std::vector<double> mean_fix(param_grads ? a.n * a.groups : 0);
  const ChannelSums keep = param_grads ? ChannelSums{ch_dy.data(), ch_dy_dev.data(), mean_fix.data()}
                                       : ChannelSums{nullptr, nullptr, nullptr};
  parallel_for(a.n * a.groups, slices_per_task(per_group * a.inner),
               [&](int64_t t0, int64_t t1) { dispatch_backward_slices(a, t0, t1, keep); });
  if (!param_grads) return;

  const float* rstd = static_cast<const float*>(a.rstd);
  for (int64_t c = 0; c < a.c; ++c) {
    const int64_t g = c / std::max<int64_t>(per_group, 1);
    double acc_w = 0, acc_b = 0;
    for (int64_t n = 0; n < a.n; ++n) {
      const int64_t t = n * a.groups + g;
      const double s_dy = ch_dy[n * a.c + c];
      // Σ dy·x̂ = rstd·Σ dy·((x − mu) − delta)
      acc_w += static_cast<double>(rstd[t]) * (ch_dy_dev[n * a.c + c] - mean_fix[t] * s_dy);
      acc_b += s_dy;
    }
    if (dw) dw[c] = static_cast<float>(acc_w);
    if (db) db[c] = static_cast<float>(acc_b);
  }
}

}  // namespace

IMPRINT_REGISTER_KERNEL(group_norm_forward, CPU, GroupNormForwardArgs, group_norm_forward_cpu);
IMPRINT_REGISTER_KERNEL(group_norm_backward, CPU, GroupNormBackwardArgs, group_norm_backward_cpu);

}  // namespace cpu
}  // namespace imprint
