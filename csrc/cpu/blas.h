// Single-precision GEMM for the CPU backend: OpenBLAS when the build found it
// (IMPRINT_HAVE_OPENBLAS), otherwise Imprint's own blocked kernel.
#pragma once
#include <cstdint>
#include <string>

namespace imprint {

// Row-major C[m,n] = op(A)·op(B), op(A) = A[m,k] or A[k,m]ᵀ (lda/ldb/ldc: row strides).
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, float* c, int64_t ldc);
// sgemm that also takes empty shapes: nothing for m·n = 0, zeros for k = 0
// (BLAS libraries reject the zero leading dimensions an empty k brings).
void sgemm_or_zeros(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                    const float* b, int64_t ldb, float* c, int64_t ldc);
// Threads the BLAS library may use for one call.
void blas_set_num_threads(int n);
// "OpenBLAS 0.3.21 ..." or "imprint (built-in blocked kernel)".
std::string blas_name();

// While alive, BLAS calls run single-threaded, for kernels whose pool threads
// run GEMMs side by side (the pool is the parallelism); the thread count comes
// back on every exit. `active = false` makes it a no-op.
class SerialBlasScope {
 public:
  explicit SerialBlasScope(bool active = true);
  ~SerialBlasScope();
  SerialBlasScope(const SerialBlasScope&) = delete;
  SerialBlasScope& operator=(const SerialBlasScope&) = delete;

 private:
  bool active_;
};

}  // namespace imprint
