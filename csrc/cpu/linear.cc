// linear on the CPU through sgemm: y = x·Wᵀ + b; dx = dy·W; dW = dyᵀ·x; db = Σ dy.
#include "core/args/linear.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/blas.h"
#include "cpu/nn_util.h"

#include <algorithm>

namespace imprint {
namespace cpu {
namespace {

void linear_forward_cpu(const LinearForwardArgs& a) {
  require_f32("linear_forward", a.dtype);
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w);
  const float* b = static_cast<const float*>(a.bias);
  float* y = static_cast<float*>(a.y);
  if (a.rows == 0 || a.out == 0) return;
  if (a.in == 0) {
    for (int64_t i = 0; i < a.rows * a.out; ++i) y[i] = 0.0f;
  } else {
    sgemm(false, true, a.rows, a.out, a.in, x, a.in, w, a.in, y, a.out);
  }
  if (b) {
    parallel_for(a.rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(a.out, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = 0; j < a.out; ++j) y[r * a.out + j] += b[j];
    });
  }
}

void linear_backward_cpu(const LinearBackwardArgs& a) {
  require_f32("linear_backward", a.dtype);
  const float* dy = static_cast<const float*>(a.dy);
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w);
  float* dx = static_cast<float*>(a.dx);
  float* dw = static_cast<float*>(a.dw);
  float* db = static_cast<float*>(a.dbias);
  const bool empty_k = a.out == 0 || a.rows == 0;
  if (a.rows * a.in > 0) {
    if (a.out == 0) std::fill(dx, dx + a.rows * a.in, 0.0f);
    else sgemm(false, false, a.rows, a.in, a.out, dy, a.out, w, a.in, dx, a.in);
  }
  if (dw && a.out * a.in > 0) {
    if (empty_k) std::fill(dw, dw + a.out * a.in, 0.0f);
    else sgemm(true, false, a.out, a.in, a.rows, dy, a.out, x, a.in, dw, a.in);
  }
  if (db) {
    // Column sums in double: the bias gradient sums over every row.
    parallel_for(a.out, 64, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        double acc = 0;
        for (int64_t r = 0; r < a.rows; ++r) acc += dy[r * a.out + j];
        db[j] = static_cast<float>(acc);
      }
    });
  }
}

}  // namespace

IMPRINT_REGISTER_KERNEL(linear_forward, CPU, LinearForwardArgs, linear_forward_cpu);
IMPRINT_REGISTER_KERNEL(linear_backward, CPU, LinearBackwardArgs, linear_backward_cpu);

}  // namespace cpu
}  // namespace imprint
