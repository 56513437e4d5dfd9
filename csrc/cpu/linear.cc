// linear on the CPU through sgemm: y = x·Wᵀ + b; dx = dy·W; dW = dyᵀ·x; db = Σ dy.
#include "core/args/linear.h"
#include "core/kernel_registry.h"
#include "cpu/blas.h"
#include "cpu/linear_bias.h"
#include "cpu/nn_util.h"

namespace imprint {
namespace cpu {
namespace {

void linear_forward_cpu(const LinearForwardArgs& a) {
  require_f32("linear_forward", a.dtype);
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w);
  const float* b = static_cast<const float*>(a.bias);
  float* y = static_cast<float*>(a.y);
  sgemm_or_zeros(false, true, a.rows, a.out, a.in, x, a.in, w, a.in, y, a.out);
  if (b) add_bias_rows(y, b, a.rows, a.out);
}

void linear_backward_cpu(const LinearBackwardArgs& a) {
  require_f32("linear_backward", a.dtype);
  const float* dy = static_cast<const float*>(a.dy);
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w);
  float* dx = static_cast<float*>(a.dx);
  float* dw = static_cast<float*>(a.dw);
  float* db = static_cast<float*>(a.dbias);
  sgemm_or_zeros(false, false, a.rows, a.in, a.out, dy, a.out, w, a.in, dx, a.in);
  if (dw) sgemm_or_zeros(true, false, a.out, a.in, a.rows, dy, a.out, x, a.in, dw, a.in);
  if (db) bias_grad(dy, a.rows, a.out, db);
}

}  // namespace

IMPRINT_REGISTER_KERNEL(linear_forward, CPU, LinearForwardArgs, linear_forward_cpu);
IMPRINT_REGISTER_KERNEL(linear_backward, CPU, LinearBackwardArgs, linear_backward_cpu);

}  // namespace cpu
}  // namespace imprint
