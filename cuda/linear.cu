// linear on the GPU, the twin of csrc/cpu/linear.cc, as GEMMs (gemm.cuh):
//   y = x·Wᵀ + b   (C preset to the broadcast bias, then beta = 1: one rounding)
//   dx = dy·W;  dW = dyᵀ·x;  db = Σ_rows dy (in double, like the CPU)
// f32, f16 and bf16 storage, f32 accumulation. Also the bias helpers conv.cu shares.
#include "core/args/linear.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "float_dispatch.cuh"
#include "gemm.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

template <class T>
__global__ void fill_bias_kernel(const T* bias, T* out, int64_t total, int64_t channels, int64_t inner) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = bias[i / inner % channels];
  }
}

void linear_forward_cuda(const LinearForwardArgs& a) {
  require_float("linear_forward", a.dtype);
  if (a.rows == 0 || a.out == 0) return;
  const cudaStream_t stream = current_stream();
  if (a.bias) fill_bias(a.dtype, a.bias, a.y, a.rows, a.out, 1, stream);
  Gemm g;  // y[rows, out] = x[rows, in] · (w stored [out, in])ᵀ
  g.ab_dtype = g.c_dtype = a.dtype;
  g.trans_b = true;
  g.m = a.rows;
  g.n = a.out;
  g.k = a.in;
  g.a = a.x;
  g.lda = a.in;
  g.b = a.w;
  g.ldb = a.in;
  g.c = a.y;
  g.ldc = a.out;
  g.beta = a.bias ? 1.0f : 0.0f;
  gemm(g, stream);
}

void linear_backward_cuda(const LinearBackwardArgs& a) {
  require_float("linear_backward", a.dtype);
  const cudaStream_t stream = current_stream();
  if (a.rows * a.in > 0) {
    Gemm g;  // dx[rows, in] = dy[rows, out] · w[out, in]
    g.ab_dtype = g.c_dtype = a.dtype;
    g.m = a.rows;
    g.n = a.in;
    g.k = a.out;
    g.a = a.dy;
    g.lda = a.out;
    g.b = a.w;
    g.ldb = a.in;
    g.c = a.dx;
    g.ldc = a.in;
    gemm(g, stream);
  }
  if (a.dw && a.out * a.in > 0) {
    Gemm g;  // dw[out, in] = (dy stored [rows, out])ᵀ · x[rows, in]
    g.ab_dtype = g.c_dtype = a.dtype;
    g.trans_a = true;
    g.m = a.out;
    g.n = a.in;
    g.k = a.rows;
    g.a = a.dy;
    g.lda = a.out;
    g.b = a.x;
    g.ldb = a.in;
    g.c = a.dw;
    g.ldc = a.in;
    gemm(g, stream);
  }
  if (a.dbias) bias_grad(a.dtype, a.dy, a.dbias, a.rows, a.out, 1, stream);
}

}  // namespace

void fill_bias(DType dtype, const void* bias, void* out, int64_t outer, int64_t channels, int64_t inner,
               cudaStream_t stream) {
  const int64_t total = outer * channels * inner;
  if (total <= 0) return;
  switch (dtype) {
    case DType::F32:
      fill_bias_kernel<<<grid_size(total), kThreads, 0, stream>>>(static_cast<const float*>(bias),
                                                                  static_cast<float*>(out), total, channels, inner);
      break;
    case DType::F16:
    case DType::BF16:  // both are 16-bit words copied as they are
      fill_bias_kernel<<<grid_size(total), kThreads, 0, stream>>>(static_cast<const uint16_t*>(bias),
                                                                  static_cast<uint16_t*>(out), total, channels, inner);
      break;
    default: fail(ErrorCode::Internal, std::string("cuda fill_bias reached with dtype ") + dtype_name(dtype));
  }
  check_launch("bias fill kernel");
}

void bias_grad(DType dtype, const void* dy, void* db, int64_t outer, int64_t channels, int64_t inner,
               cudaStream_t stream) {
  // dy [outer, channels, inner] summed over dims 0 and 2 (launch_sum skips size-1 dims' cost).
  SumArgs s{};
  s.in_dtype = s.out_dtype = dtype;
  s.in = dy;
  s.out = db;
  s.out_numel = channels;
  s.out_ndim = 1;
  s.out_shape[0] = channels;
  s.in_out_strides[0] = inner;
  s.r_numel = outer * inner;
  s.r_ndim = 2;
  s.r_shape[0] = outer;
  s.r_strides[0] = channels * inner;
  s.r_shape[1] = inner;
  s.r_strides[1] = 1;
  launch_sum(s, stream);
}

IMPRINT_REGISTER_KERNEL(linear_forward, CUDA, LinearForwardArgs, linear_forward_cuda);
IMPRINT_REGISTER_KERNEL(linear_backward, CUDA, LinearBackwardArgs, linear_backward_cuda);

}  // namespace cuda
}  // namespace imprint
