// Element-wise activations on the CPU: SiLU, GELU (exact erf form),
// quick-GELU, GEGLU and scale, forward and backward. Each hot loop is a plain
// function over a contiguous range (see act_math.h for why), and
// parallel_for hands each thread one range at a time.
#include <algorithm>

#include "core/args/act.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/act_math.h"
#include "cpu/act_ranges.h"
#include "cpu/nn_util.h"

namespace imprint {
namespace cpu {

// silu(x) = x·σ(x). Outside the anonymous namespace: the fused GroupNorm +
// SiLU (norm_group.cc) calls the same code, so its results are bit-identical.
IMPRINT_ACT_SIMD void silu_forward_range(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * act_math::sigmoid(x[i]);
}

namespace {

// Elements per chunk: a few tens of microseconds of exp-heavy work.
constexpr int64_t kGrain = 1 << 14;
// CLIP's quick GELU: x·σ(1.702·x).
constexpr float kQuickGeluAlpha = 1.702f;

// silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
IMPRINT_ACT_SIMD void silu_backward_range(const float* __restrict dy, const float* __restrict x, float* __restrict dx,
                                          int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = act_math::sigmoid(x[i]);
    dx[i] = dy[i] * (s * (1.0f + x[i] * (1.0f - s)));
  }
}

// gelu(x) = x·Φ(x); gelu'(x) = Φ(x) + x·φ(x).
IMPRINT_ACT_SIMD void gelu_forward_range(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * act_math::normal(x[i]).cdf;
}

IMPRINT_ACT_SIMD void gelu_backward_range(const float* __restrict dy, const float* __restrict x, float* __restrict dx,
                                          int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const act_math::Normal d = act_math::normal(x[i]);
    dx[i] = dy[i] * (d.cdf + x[i] * d.pdf);
  }
}

// quick_gelu(x) = x·σ(αx); quick_gelu'(x) = σ(αx) + αx·σ(αx)·(1 − σ(αx)).
IMPRINT_ACT_SIMD void quick_gelu_forward_range(const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * act_math::sigmoid(kQuickGeluAlpha * x[i]);
}

IMPRINT_ACT_SIMD void quick_gelu_backward_range(const float* __restrict dy, const float* __restrict x,
                                                float* __restrict dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float ax = kQuickGeluAlpha * x[i];
    const float s = act_math::sigmoid(ax);
    dx[i] = dy[i] * (s + ax * (s * (1.0f - s)));
  }
}

// Rows of x are [value | gate]: y = value·gelu(gate);
// d value = dy·gelu(gate), d gate = dy·value·gelu'(gate).
IMPRINT_ACT_SIMD void geglu_forward_rows(const float* __restrict x, float* __restrict y, int64_t rows,
                                         int64_t features) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* value = x + r * 2 * features;
    const float* gate = value + features;
    float* out = y + r * features;
    for (int64_t j = 0; j < features; ++j) out[j] = value[j] * (gate[j] * act_math::normal(gate[j]).cdf);
  }
}

IMPRINT_ACT_SIMD void geglu_backward_rows(const float* __restrict dy, const float* __restrict x, float* __restrict dx,
                                          int64_t rows, int64_t features) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* value = x + r * 2 * features;
    const float* gate = value + features;
    const float* g = dy + r * features;
    float* d_value = dx + r * 2 * features;
    float* d_gate = d_value + features;
    for (int64_t j = 0; j < features; ++j) {
      const act_math::Normal d = act_math::normal(gate[j]);
      d_value[j] = g[j] * (gate[j] * d.cdf);
      d_gate[j] = g[j] * value[j] * (d.cdf + gate[j] * d.pdf);
    }
  }
}

IMPRINT_ACT_SIMD void scale_range(const float* __restrict x, float* __restrict y, int64_t n, float factor) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * factor;
}

using ForwardRange = void (*)(const float* __restrict, float* __restrict, int64_t);
using BackwardRange = void (*)(const float* __restrict, const float* __restrict, float* __restrict, int64_t);

void run_forward(const char* op, const ActForwardArgs& a, ForwardRange range) {
  require_f32(op, a.dtype);
  const float* x = static_cast<const float*>(a.x);
  float* y = static_cast<float*>(a.y);
  parallel_for(a.numel, kGrain, [&](int64_t i0, int64_t i1) { range(x + i0, y + i0, i1 - i0); });
}

void run_backward(const char* op, const ActBackwardArgs& a, BackwardRange range) {
  require_f32(op, a.dtype);
  const float* dy = static_cast<const float*>(a.dy);
  const float* x = static_cast<const float*>(a.x);
  float* dx = static_cast<float*>(a.dx);
  parallel_for(a.numel, kGrain, [&](int64_t i0, int64_t i1) { range(dy + i0, x + i0, dx + i0, i1 - i0); });
}

void silu_forward_cpu(const ActForwardArgs& a) { run_forward("silu_forward", a, silu_forward_range); }
void silu_backward_cpu(const ActBackwardArgs& a) { run_backward("silu_backward", a, silu_backward_range); }
void gelu_forward_cpu(const ActForwardArgs& a) { run_forward("gelu_forward", a, gelu_forward_range); }
void gelu_backward_cpu(const ActBackwardArgs& a) { run_backward("gelu_backward", a, gelu_backward_range); }
void quick_gelu_forward_cpu(const ActForwardArgs& a) {
  run_forward("quick_gelu_forward", a, quick_gelu_forward_range);
}
void quick_gelu_backward_cpu(const ActBackwardArgs& a) {
  run_backward("quick_gelu_backward", a, quick_gelu_backward_range);
}

int64_t rows_per_chunk(int64_t row_elements) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(row_elements, 1)); }

void geglu_forward_cpu(const GegluForwardArgs& a) {
  require_f32("geglu_forward", a.dtype);
  const float* x = static_cast<const float*>(a.x);
  float* y = static_cast<float*>(a.y);
  if (a.features == 0) return;
  parallel_for(a.rows, rows_per_chunk(a.features), [&](int64_t r0, int64_t r1) {
    geglu_forward_rows(x + r0 * 2 * a.features, y + r0 * a.features, r1 - r0, a.features);
  });
}

void geglu_backward_cpu(const GegluBackwardArgs& a) {
  require_f32("geglu_backward", a.dtype);
  const float* dy = static_cast<const float*>(a.dy);
  const float* x = static_cast<const float*>(a.x);
  float* dx = static_cast<float*>(a.dx);
  if (a.features == 0) return;
  parallel_for(a.rows, rows_per_chunk(a.features), [&](int64_t r0, int64_t r1) {
    geglu_backward_rows(dy + r0 * a.features, x + r0 * 2 * a.features, dx + r0 * 2 * a.features, r1 - r0,
                        a.features);
  });
}

void scale_forward_cpu(const ScaleArgs& a) {
  require_f32("scale_forward", a.dtype);
  const float* x = static_cast<const float*>(a.x);
  float* y = static_cast<float*>(a.y);
  const float factor = static_cast<float>(a.factor);
  // Memory-bound: larger chunks than the exp-heavy kernels.
  parallel_for(a.numel, 4 * kGrain, [&](int64_t i0, int64_t i1) { scale_range(x + i0, y + i0, i1 - i0, factor); });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(silu_forward, CPU, ActForwardArgs, silu_forward_cpu);
IMPRINT_REGISTER_KERNEL(silu_backward, CPU, ActBackwardArgs, silu_backward_cpu);
IMPRINT_REGISTER_KERNEL(gelu_forward, CPU, ActForwardArgs, gelu_forward_cpu);
IMPRINT_REGISTER_KERNEL(gelu_backward, CPU, ActBackwardArgs, gelu_backward_cpu);
IMPRINT_REGISTER_KERNEL(quick_gelu_forward, CPU, ActForwardArgs, quick_gelu_forward_cpu);
IMPRINT_REGISTER_KERNEL(quick_gelu_backward, CPU, ActBackwardArgs, quick_gelu_backward_cpu);
IMPRINT_REGISTER_KERNEL(geglu_forward, CPU, GegluForwardArgs, geglu_forward_cpu);
IMPRINT_REGISTER_KERNEL(geglu_backward, CPU, GegluBackwardArgs, geglu_backward_cpu);
IMPRINT_REGISTER_KERNEL(scale_forward, CPU, ScaleArgs, scale_forward_cpu);

}  // namespace cpu
}  // namespace imprint
