// The one GEMM entry point of the CUDA backend, row-major like the rest of
// Imprint: for every batch entry b,
//   C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b]
// with f32/f16/bf16 storage and f32 accumulation. linear, conv (and the
// attention projections) call gemm(); Backend::matmul goes through it too.
//
// gemm() tries, in order: cuBLAS (opened at run time, gemm_cublas.cu), Imprint's
// tensor-core kernel for f16/bf16 (gemm_tensor_core.cu), and the SIMT kernel
// that handles every case (matmul.cu).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace imprint {
namespace cuda {

struct Gemm {
  DType ab_dtype = DType::F32;  // storage of A and B
  DType c_dtype = DType::F32;   // storage of C: ab_dtype, or F32 to keep partial results unrounded
  bool trans_a = false;         // A stored [k, m] (row stride lda ≥ m) instead of [m, k] (lda ≥ k)
  bool trans_b = false;         // B stored [n, k] (ldb ≥ k) instead of [k, n] (ldb ≥ n)
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int64_t lda = 0, stride_a = 0;  // stride_*: elements between batch entries (0 = shared by all)
  const void* b = nullptr;
  int64_t ldb = 0, stride_b = 0;
  void* c = nullptr;
  int64_t ldc = 0, stride_c = 0;  // C is [m, n] with row stride ldc ≥ n
  int64_t batch = 1;
  float alpha = 1.0f;
  float beta = 0.0f;  // 0: C is only written (never read, so it may hold garbage)
};

// Queues the product on `stream` (the current device's). Throws CUDA_ERROR when
// a launch or a cuBLAS call fails; never synchronises.
void gemm(const Gemm& g, cudaStream_t stream);  // matmul.cu

// (gemm_library(), in kernels.cuh, names the library it uses.)

// --- the implementations gemm() chooses between -------------------------------

// True when cuBLAS ran the product; false when it is not available (not
// installed, disabled, or a size beyond its 32-bit arguments).
bool cublas_gemm(const Gemm& g, cudaStream_t stream);  // gemm_cublas.cu

// True when the tensor-core kernel ran it: f16 on sm_75+, bf16 on sm_80+.
bool tensor_core_gemm(const Gemm& g, cudaStream_t stream);  // gemm_tensor_core.cu

// --- bias helpers of the GEMM-based layers (linear.cu; conv uses them too) ----

// out[o, c, i] = bias[c] for out [outer, channels, inner]: C before a GEMM with
// beta = 1, so the bias is added in f32 and the sum rounded once.
void fill_bias(DType dtype, const void* bias, void* out, int64_t outer, int64_t channels, int64_t inner,
               cudaStream_t stream);
// db[c] = Σ over o and i of dy[o, c, i], accumulated in double like the CPU.
void bias_grad(DType dtype, const void* dy, void* db, int64_t outer, int64_t channels, int64_t inner,
               cudaStream_t stream);

// The current device's compute capability as major·10 + minor (cached per device).
int device_sm();  // gemm_tensor_core.cu

}  // namespace cuda
}  // namespace imprint
