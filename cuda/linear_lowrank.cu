// Projection + low-rank modulation on the GPU, the twin of
// csrc/cpu/linear_lowrank.cc (core/args/linear.h):
//   u = x·downᵀ,  y = x·Wᵀ + b + s·u·upᵀ
// as GEMMs (gemm.cuh) that accumulate into y in place (alpha = s, beta = 1):
// W + s·up·down is never formed and no second output buffer is written, so
// per-sample low-rank weights (the tuning encoder's) cost one batched GEMM
// pair more than a plain linear. What would make it faster: the u·upᵀ term in
// the epilogue of the x·Wᵀ GEMM (rank ≤ 64 fits beside the output tile),
// saving the second pass over y.
#include "core/args/linear.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "gemm.cuh"
#include "kernels.cuh"
#include "scratch.cuh"
#include "float_dispatch.cuh"

namespace imprint {
namespace cuda {
namespace {

// C = alpha·op(A)·op(B) + beta·C over `batch` samples; a stride of 0 shares the operand.
void product(DType dtype, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void* a, int64_t lda,
             int64_t stride_a, const void* b, int64_t ldb, int64_t stride_b, void* c, int64_t ldc, int64_t stride_c,
             int64_t batch, float alpha, float beta, cudaStream_t stream) {
  Gemm g;
  g.ab_dtype = g.c_dtype = dtype;
  g.trans_a = ta;
  g.trans_b = tb;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.lda = lda;
  g.stride_a = stride_a;
  g.b = b;
  g.ldb = ldb;
  g.stride_b = stride_b;
  g.c = c;
  g.ldc = ldc;
  g.stride_c = stride_c;
  g.batch = batch;
  g.alpha = alpha;
  g.beta = beta;
  gemm(g, stream);
}

void linear_lowrank_forward_cuda(const LinearLowRankForwardArgs& a) {
  require_float("linear_lowrank_forward", a.dtype);
  const int64_t n = a.samples, rps = a.rows_per_sample, rows = n * rps, r = a.rank, in = a.in, out = a.out;
  if (rows == 0) return;
  const cudaStream_t stream = current_stream();
  if (a.bias) fill_bias(a.dtype, a.bias, a.y, rows, out, 1, stream);
  // y (+)= x·Wᵀ over every row.
  product(a.dtype, false, true, rows, out, in, a.x, in, 0, a.w, in, 0, a.y, out, 0, 1, 1.0f, a.bias ? 1.0f : 0.0f,
          stream);
  // u = x·downᵀ: one product over every row when down is shared.
  if (a.down_per_sample) {
    product(a.dtype, false, true, rps, r, in, a.x, in, rps * in, a.down, in, r * in, a.u, r, rps * r, n, 1.0f, 0.0f,
            stream);
  } else {
    product(a.dtype, false, true, rows, r, in, a.x, in, 0, a.down, in, 0, a.u, r, 0, 1, 1.0f, 0.0f, stream);
  }
  // y += s·u·upᵀ
  if (a.up_per_sample) {
    product(a.dtype, false, true, rps, out, r, a.u, r, rps * r, a.up, r, out * r, a.y, out, rps * out, n, a.scale,
            1.0f, stream);
  } else {
    product(a.dtype, false, true, rows, out, r, a.u, r, 0, a.up, r, 0, a.y, out, 0, 1, a.scale, 1.0f, stream);
  }
}

void linear_lowrank_backward_cuda(const LinearLowRankBackwardArgs& a) {
  require_float("linear_lowrank_backward", a.dtype);
  const int64_t n = a.samples, rps = a.rows_per_sample, rows = n * rps, r = a.rank, in = a.in, out = a.out;
  const cudaStream_t stream = current_stream();
  const float s = a.scale;
  Scratch g_mem(static_cast<size_t>(rows * r) * dtype_size(a.dtype), "linear_lowrank_backward (dy·up)");
  void* g = g_mem.as<char>();
  // g = dy·up
  if (a.up_per_sample) {
    product(a.dtype, false, false, rps, r, out, a.dy, out, rps * out, a.up, r, out * r, g, r, rps * r, n, 1.0f, 0.0f,
            stream);
  } else {
    product(a.dtype, false, false, rows, r, out, a.dy, out, 0, a.up, r, 0, g, r, 0, 1, 1.0f, 0.0f, stream);
  }
  // dx = dy·W, then += s·g·down
  product(a.dtype, false, false, rows, in, out, a.dy, out, 0, a.w, in, 0, a.dx, in, 0, 1, 1.0f, 0.0f, stream);
  if (a.down_per_sample) {
    product(a.dtype, false, false, rps, in, r, g, r, rps * r, a.down, in, r * in, a.dx, in, rps * in, n, s, 1.0f,
            stream);
  } else {
    product(a.dtype, false, false, rows, in, r, g, r, 0, a.down, in, 0, a.dx, in, 0, 1, s, 1.0f, stream);
  }
  // d_down = s·gᵀ·x (per sample, or summed over every row)
  if (a.down_per_sample) {
    product(a.dtype, true, false, r, in, rps, g, r, rps * r, a.x, in, rps * in, a.d_down, in, r * in, n, s, 0.0f,
            stream);
  } else {
    product(a.dtype, true, false, r, in, rows, g, r, 0, a.x, in, 0, a.d_down, in, 0, 1, s, 0.0f, stream);
  }
  // d_up = s·dyᵀ·u
  if (a.up_per_sample) {
    product(a.dtype, true, false, out, r, rps, a.dy, out, rps * out, a.u, r, rps * r, a.d_up, r, out * r, n, s, 0.0f,
            stream);
  } else {
    product(a.dtype, true, false, out, r, rows, a.dy, out, 0, a.u, r, 0, a.d_up, r, 0, 1, s, 0.0f, stream);
  }
  if (a.dw) product(a.dtype, true, false, out, in, rows, a.dy, out, 0, a.x, in, 0, a.dw, in, 0, 1, 1.0f, 0.0f, stream);
  if (a.dbias) bias_grad(a.dtype, a.dy, a.dbias, rows, out, 1, stream);
}

}  // namespace

IMPRINT_REGISTER_KERNEL(linear_lowrank_forward, CUDA, LinearLowRankForwardArgs, linear_lowrank_forward_cuda);
IMPRINT_REGISTER_KERNEL(linear_lowrank_backward, CUDA, LinearLowRankBackwardArgs, linear_lowrank_backward_cuda);

}  // namespace cuda
}  // namespace imprint
