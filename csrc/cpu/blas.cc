#include "cpu/blas.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/cpu_isa.h"

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

namespace {

// The BLAS library runs as many threads as the pool (core/thread_pool.h
// knows nothing of BLAS; it calls this when the pool starts or is resized).
[[maybe_unused]] const bool kBlasFollowsPool = (on_thread_count(blas_set_num_threads), true);

constexpr int64_t kBlockM = 64, kBlockK = 256;

// C rows [i0, i1) += A_panel · B_panel for one k block; panels are contiguous
// (A: rows × kb, B: kb × n), so the inner loop is a unit-stride axpy the
// compiler vectorises. Each C element sums over p in order whatever the vector
// width, so the AVX2 copy gives the same bits as the baseline one, faster.
inline __attribute__((always_inline)) void block_kernel_body(const float* a_panel, const float* b_panel, float* c,
                                                             int64_t ldc, int64_t rows, int64_t n, int64_t kb) {
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

void block_kernel_baseline(const float* a_panel, const float* b_panel, float* c, int64_t ldc, int64_t rows, int64_t n,
                           int64_t kb) {
  block_kernel_body(a_panel, b_panel, c, ldc, rows, n, kb);
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
__attribute__((target("avx2,fma"))) void block_kernel_avx2(const float* a_panel, const float* b_panel, float* c,
                                                            int64_t ldc, int64_t rows, int64_t n, int64_t kb) {
  block_kernel_body(a_panel, b_panel, c, ldc, rows, n, kb);
}
#endif

void block_kernel(const float* a_panel, const float* b_panel, float* c, int64_t ldc, int64_t rows, int64_t n,
                  int64_t kb) {
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
  if (static_cast<int>(cpu::cpu_isa()) >= static_cast<int>(cpu::CpuIsa::kAvx2)) {
    return block_kernel_avx2(a_panel, b_panel, c, ldc, rows, n, kb);
  }
#endif
  block_kernel_baseline(a_panel, b_panel, c, ldc, rows, n, kb);
}

// Imprint's own blocked GEMM: the build's GEMM without OpenBLAS, and with it
// when IMPRINT_BLAS=none is set at run time (a second summation order to test).
void builtin_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                   const float* b, int64_t ldb, float* c, int64_t ldc) {
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

constexpr const char* kBuiltinName = "imprint (built-in blocked kernel)";

}  // namespace

#ifdef IMPRINT_HAVE_OPENBLAS

namespace {
// IMPRINT_BLAS=none at run time: the built-in kernel although OpenBLAS is linked (read once).
bool openblas_off() {
  static const bool off = [] {
    const char* v = std::getenv("IMPRINT_BLAS");
    return v != nullptr && std::strcmp(v, "none") == 0;
  }();
  return off;
}
}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, float* c, int64_t ldc) {
  if (openblas_off()) return builtin_sgemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), 0.0f, c, static_cast<blasint>(ldc));
}

void blas_set_num_threads(int n) { openblas_set_num_threads(n); }

std::string blas_name() {
  if (openblas_off()) return std::string(kBuiltinName) + "; OpenBLAS linked but off (IMPRINT_BLAS=none)";
  return std::string("OpenBLAS (") + openblas_get_config() + ")";
}

#else

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, float* c, int64_t ldc) {
  builtin_sgemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
}

void blas_set_num_threads(int) {}

std::string blas_name() { return kBuiltinName; }

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
