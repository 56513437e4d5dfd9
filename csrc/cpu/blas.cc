#include "cpu/blas.h"

#include <algorithm>
#include <vector>

#include "core/thread_pool.h"

#ifdef IMPRINT_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace imprint {

SerialBlasScope::SerialBlasScope(bool active) : active_(active) {
  if (active_) blas_set_num_threads(1);
}

SerialBlasScope::~SerialBlasScope() {
  if (active_) blas_set_num_threads(num_threads());
}

#ifdef IMPRINT_HAVE_OPENBLAS

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), 0.0f, c, static_cast<blasint>(ldc));
}

void blas_set_num_threads(int n) { openblas_set_num_threads(n); }

std::string blas_name() { return std::string("OpenBLAS (") + openblas_get_config() + ")"; }

#else

namespace {

constexpr int64_t kBlockM = 64, kBlockK = 256;

// C rows [i0, i1) += A_panel · B_panel for one k block; panels are contiguous
// (A: rows × kb, B: kb × n), so the inner loop is a unit-stride axpy the
// compiler vectorises.
void block_kernel(const float* a_panel, const float* b_panel, float* c, int64_t ldc, int64_t rows, int64_t n,
                  int64_t kb) {
  for (int64_t i = 0; i < rows; ++i) {
    float* c_row = c + i * ldc;
    const float* a_row = a_panel + i * kb;
    for (int64_t p = 0; p < kb; ++p) {
      const float av = a_row[p];
      const float* b_row = b_panel + p * n;
      for (int64_t j = 0; j < n; ++j) c_row[j] += av * b_row[j];
    }
  }
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
  for (int64_t k0 = 0; k0 < k; k0 += kBlockK) {
    const int64_t kb = std::min(kBlockK, k - k0);
    // Pack op(B)[k0:k0+kb, :] row-major.
    std::vector<float> b_panel(static_cast<size_t>(kb * n));
    for (int64_t p = 0; p < kb; ++p)
      for (int64_t j = 0; j < n; ++j)
        b_panel[p * n + j] = trans_b ? b[j * ldb + (k0 + p)] : b[(k0 + p) * ldb + j];
    parallel_for((m + kBlockM - 1) / kBlockM, 1, [&](int64_t blk0, int64_t blk1) {
      std::vector<float> a_panel(static_cast<size_t>(kBlockM * kb));
      for (int64_t blk = blk0; blk < blk1; ++blk) {
        const int64_t i0 = blk * kBlockM, rows = std::min(kBlockM, m - i0);
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t p = 0; p < kb; ++p)
            a_panel[i * kb + p] = trans_a ? a[(k0 + p) * lda + (i0 + i)] : a[(i0 + i) * lda + (k0 + p)];
        block_kernel(a_panel.data(), b_panel.data(), c + i0 * ldc, ldc, rows, n, kb);
      }
    });
  }
}

void blas_set_num_threads(int) {}

std::string blas_name() { return "imprint (built-in blocked kernel)"; }

#endif

void sgemm_or_zeros(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                    const float* b, int64_t ldb, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  sgemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
}

}  // namespace imprint
