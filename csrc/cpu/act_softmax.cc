// Softmax on the CPU along one axis of x viewed as [outer, size, inner]:
// y = e^(x − max) / Σ e^(x − max), and dx = y·(dy − Σ dy·y). Sums run in
// double. The last axis (inner = 1, attention scores) works row by row; other
// axes work on blocks of columns so the inner loops stay contiguous.
#include <algorithm>
#include <limits>

#include "core/args/act.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/act_math.h"
#include "cpu/nn_util.h"

namespace imprint {
namespace cpu {
namespace {

constexpr int64_t kGrain = 1 << 14;  // elements per chunk
// Independent partial sums, so the double reductions vectorise without reassociation.
constexpr int kLanes = 16;
// Columns per block on the strided path (their statistics live on the stack).
constexpr int64_t kBlock = 64;

// Floats as integers in the same order (negatives get their magnitude bits
// flipped; the map is its own inverse), so the row maximum is an integer max
// reduction, which vectorises without -ffast-math. NaNs sort beyond ±inf; a
// row with a NaN comes out NaN either way.
IMPRINT_ACT_INLINE int32_t order_key(float f) {
  const int32_t bits = act_math::float_bits(f);
  return bits ^ ((bits >> 31) & 0x7fffffff);
}

IMPRINT_ACT_INLINE float row_max(const float* x, int64_t n) {
  int32_t m = std::numeric_limits<int32_t>::min();
  for (int64_t i = 0; i < n; ++i) {
    const int32_t k = order_key(x[i]);
    m = k > m ? k : m;
  }
  const int32_t bits = m ^ ((m >> 31) & 0x7fffffff);
  return act_math::bits_float(bits);
}

IMPRINT_ACT_INLINE double row_sum(const float* x, int64_t n) {
  double lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += x[i + l];
  for (; i < n; ++i) lane[0] += x[i];
  double s = 0;
  for (int l = 0; l < kLanes; ++l) s += lane[l];
  return s;
}

IMPRINT_ACT_INLINE double row_dot(const float* a, const float* b, int64_t n) {
  double lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += static_cast<double>(a[i + l]) * b[i + l];
  for (; i < n; ++i) lane[0] += static_cast<double>(a[i]) * b[i];
  double s = 0;
  for (int l = 0; l < kLanes; ++l) s += lane[l];
  return s;
}

// A row whose maximum is −inf (all −inf) or +inf gives NaN, as in PyTorch.
IMPRINT_ACT_SIMD void softmax_forward_rows(const float* __restrict x, float* __restrict y, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    const float m = row_max(xr, n);
    for (int64_t i = 0; i < n; ++i) yr[i] = act_math::exp(xr[i] - m);
    const float inv = static_cast<float>(1.0 / row_sum(yr, n));
    for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
  }
}

IMPRINT_ACT_SIMD void softmax_backward_rows(const float* __restrict dy, const float* __restrict y,
                                            float* __restrict dx, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* gr = dy + r * n;
    const float* yr = y + r * n;
    float* dr = dx + r * n;
    const float dot = static_cast<float>(row_dot(gr, yr, n));
    for (int64_t i = 0; i < n; ++i) dr[i] = yr[i] * (gr[i] - dot);
  }
}

// Columns [0, width) of one [size, inner] slab (width ≤ kBlock), the axis strided by `inner`.
IMPRINT_ACT_SIMD void softmax_forward_columns(const float* __restrict x, float* __restrict y, int64_t size,
                                              int64_t inner, int64_t width) {
  float m[kBlock];
  double s[kBlock];
  for (int64_t j = 0; j < width; ++j) {
    m[j] = -std::numeric_limits<float>::infinity();
    s[j] = 0;
  }
  for (int64_t k = 0; k < size; ++k) {
    const float* xk = x + k * inner;
    for (int64_t j = 0; j < width; ++j) m[j] = act_math::select(xk[j] > m[j], xk[j], m[j]);
  }
  for (int64_t k = 0; k < size; ++k) {
    const float* xk = x + k * inner;
    float* yk = y + k * inner;
    for (int64_t j = 0; j < width; ++j) {
      yk[j] = act_math::exp(xk[j] - m[j]);
      s[j] += yk[j];
    }
  }
  for (int64_t j = 0; j < width; ++j) m[j] = static_cast<float>(1.0 / s[j]);  // m now holds 1/sum
  for (int64_t k = 0; k < size; ++k) {
    float* yk = y + k * inner;
    for (int64_t j = 0; j < width; ++j) yk[j] *= m[j];
  }
}

IMPRINT_ACT_SIMD void softmax_backward_columns(const float* __restrict dy, const float* __restrict y,
                                               float* __restrict dx, int64_t size, int64_t inner, int64_t width) {
  double dot[kBlock];
  for (int64_t j = 0; j < width; ++j) dot[j] = 0;
  for (int64_t k = 0; k < size; ++k)
    for (int64_t j = 0; j < width; ++j) dot[j] += static_cast<double>(dy[k * inner + j]) * y[k * inner + j];
  float dotf[kBlock];
  for (int64_t j = 0; j < width; ++j) dotf[j] = static_cast<float>(dot[j]);
  for (int64_t k = 0; k < size; ++k)
    for (int64_t j = 0; j < width; ++j) dx[k * inner + j] = y[k * inner + j] * (dy[k * inner + j] - dotf[j]);
}

// Calls fn(offset of the block's first element, width) for every block of
// columns of every [size, inner] slab, in parallel.
template <class Fn>
void for_each_column_block(int64_t outer, int64_t size, int64_t inner, Fn fn) {
  const int64_t blocks = (inner + kBlock - 1) / kBlock;
  const int64_t grain = std::max<int64_t>(1, kGrain / (size * kBlock));
  parallel_for(outer * blocks, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t slab = b / blocks, j0 = (b % blocks) * kBlock;
      fn(slab * size * inner + j0, std::min(kBlock, inner - j0));
    }
  });
}

void softmax_forward_cpu(const SoftmaxForwardArgs& a) {
  require_f32("softmax_forward", a.dtype);
  const float* x = static_cast<const float*>(a.x);
  float* y = static_cast<float*>(a.y);
  if (a.outer == 0 || a.size == 0 || a.inner == 0) return;
  if (a.inner == 1) {
    parallel_for(a.outer, std::max<int64_t>(1, kGrain / a.size),
                 [&](int64_t r0, int64_t r1) { softmax_forward_rows(x + r0 * a.size, y + r0 * a.size, r1 - r0, a.size); });
    return;
  }
  for_each_column_block(a.outer, a.size, a.inner, [&](int64_t offset, int64_t width) {
    softmax_forward_columns(x + offset, y + offset, a.size, a.inner, width);
  });
}

void softmax_backward_cpu(const SoftmaxBackwardArgs& a) {
  require_f32("softmax_backward", a.dtype);
  const float* dy = static_cast<const float*>(a.dy);
  const float* y = static_cast<const float*>(a.y);
  float* dx = static_cast<float*>(a.dx);
  if (a.outer == 0 || a.size == 0 || a.inner == 0) return;
  if (a.inner == 1) {
    parallel_for(a.outer, std::max<int64_t>(1, kGrain / a.size), [&](int64_t r0, int64_t r1) {
      softmax_backward_rows(dy + r0 * a.size, y + r0 * a.size, dx + r0 * a.size, r1 - r0, a.size);
    });
    return;
  }
  for_each_column_block(a.outer, a.size, a.inner, [&](int64_t offset, int64_t width) {
    softmax_backward_columns(dy + offset, y + offset, dx + offset, a.size, a.inner, width);
  });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(softmax_forward, CPU, SoftmaxForwardArgs, softmax_forward_cpu);
IMPRINT_REGISTER_KERNEL(softmax_backward, CPU, SoftmaxBackwardArgs, softmax_backward_cpu);

}  // namespace cpu
}  // namespace imprint
