// Projection + low-rank modulation on the CPU (the twin of cuda/linear_lowrank.cu):
//   u = x·downᵀ,  y = x·Wᵀ + b + s·u·upᵀ
// and its backward (core/args/linear.h), through sgemm. down/up may be
// shared or per sample; the products run per sample only where they must.
#include "core/args/linear.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/blas.h"
#include "cpu/linear_bias.h"
#include "cpu/nn_util.h"

#include <algorithm>
#include <vector>

namespace imprint {
namespace cpu {
namespace {

// dst[i] += s·src[i]
void add_scaled(float* dst, const float* src, int64_t n, float s) {
  parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] += s * src[i];
  });
}

void scale_in_place(float* p, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) p[i] *= s;
}

void linear_lowrank_forward_cpu(const LinearLowRankForwardArgs& a) {
  require_f32("linear_lowrank_forward", a.dtype);
  const int64_t rps = a.rows_per_sample, rows = a.samples * rps, r = a.rank;
  if (rows == 0) return;
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w);
  const float* down = static_cast<const float*>(a.down);
  const float* up = static_cast<const float*>(a.up);
  const float* b = static_cast<const float*>(a.bias);
  float* y = static_cast<float*>(a.y);
  float* u = static_cast<float*>(a.u);

  sgemm_or_zeros(false, true, rows, a.out, a.in, x, a.in, w, a.in, y, a.out);  // y = x·Wᵀ
  std::vector<float> low(static_cast<size_t>(rps * a.out));
  for (int64_t s = 0; s < a.samples; ++s) {
    const float* down_s = down + (a.down_per_sample ? s * r * a.in : 0);
    const float* up_s = up + (a.up_per_sample ? s * a.out * r : 0);
    float* u_s = u + s * rps * r;
    sgemm_or_zeros(false, true, rps, r, a.in, x + s * rps * a.in, a.in, down_s, a.in, u_s, r);  // u = x·downᵀ
    sgemm_or_zeros(false, true, rps, a.out, r, u_s, r, up_s, r, low.data(), a.out);            // u·upᵀ
    add_scaled(y + s * rps * a.out, low.data(), rps * a.out, a.scale);
  }
  if (b) add_bias_rows(y, b, rows, a.out);
}

void linear_lowrank_backward_cpu(const LinearLowRankBackwardArgs& a) {
  require_f32("linear_lowrank_backward", a.dtype);
  const int64_t rps = a.rows_per_sample, rows = a.samples * rps, r = a.rank;
  const float* dy = static_cast<const float*>(a.dy);
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w);
  const float* down = static_cast<const float*>(a.down);
  const float* up = static_cast<const float*>(a.up);
  const float* u = static_cast<const float*>(a.u);
  float* dx = static_cast<float*>(a.dx);
  float* d_down = static_cast<float*>(a.d_down);
  float* d_up = static_cast<float*>(a.d_up);
  const float s = a.scale;

  // g = dy·up, per sample where up is.
  std::vector<float> g(static_cast<size_t>(rows * r));
  for (int64_t i = 0; i < a.samples; ++i) {
    const float* up_i = up + (a.up_per_sample ? i * a.out * r : 0);
    sgemm_or_zeros(false, false, rps, r, a.out, dy + i * rps * a.out, a.out, up_i, r, g.data() + i * rps * r, r);
  }
  // dx = dy·W + s·g·down
  sgemm_or_zeros(false, false, rows, a.in, a.out, dy, a.out, w, a.in, dx, a.in);
  std::vector<float> low(static_cast<size_t>(rps * a.in));
  for (int64_t i = 0; i < a.samples; ++i) {
    const float* down_i = down + (a.down_per_sample ? i * r * a.in : 0);
    sgemm_or_zeros(false, false, rps, a.in, r, g.data() + i * rps * r, r, down_i, a.in, low.data(), a.in);
    add_scaled(dx + i * rps * a.in, low.data(), rps * a.in, s);
  }
  // d_down = s·gᵀ·x and d_up = s·dyᵀ·u: one product over every row when shared.
  if (a.down_per_sample) {
    for (int64_t i = 0; i < a.samples; ++i)
      sgemm_or_zeros(true, false, r, a.in, rps, g.data() + i * rps * r, r, x + i * rps * a.in, a.in, d_down + i * r * a.in, a.in);
  } else {
    sgemm_or_zeros(true, false, r, a.in, rows, g.data(), r, x, a.in, d_down, a.in);
  }
  scale_in_place(d_down, (a.down_per_sample ? a.samples : 1) * r * a.in, s);
  if (a.up_per_sample) {
    for (int64_t i = 0; i < a.samples; ++i)
      sgemm_or_zeros(true, false, a.out, r, rps, dy + i * rps * a.out, a.out, u + i * rps * r, r, d_up + i * a.out * r, r);
  } else {
    sgemm_or_zeros(true, false, a.out, r, rows, dy, a.out, u, r, d_up, r);
  }
  scale_in_place(d_up, (a.up_per_sample ? a.samples : 1) * a.out * r, s);

  if (a.dw) sgemm_or_zeros(true, false, a.out, a.in, rows, dy, a.out, x, a.in, static_cast<float*>(a.dw), a.in);
  if (a.dbias) bias_grad(dy, rows, a.out, static_cast<float*>(a.dbias));
}

}  // namespace

IMPRINT_REGISTER_KERNEL(linear_lowrank_forward, CPU, LinearLowRankForwardArgs, linear_lowrank_forward_cpu);
IMPRINT_REGISTER_KERNEL(linear_lowrank_backward, CPU, LinearLowRankBackwardArgs, linear_lowrank_backward_cpu);

}  // namespace cpu
}  // namespace imprint
