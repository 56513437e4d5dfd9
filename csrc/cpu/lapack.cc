#include "cpu/lapack.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.h"

#ifdef IMPRINT_HAVE_LAPACK
#include <cblas.h>  // blasint: the integer width this OpenBLAS was built with

// LAPACK's Fortran entry points (no lapacke.h needed). Trailing size_t: the
// hidden lengths gfortran passes for CHARACTER arguments; passing them keeps
// calls well-defined under the Fortran ABI (extra arguments are harmless where
// a routine is written in C, as OpenBLAS's getrf/getrs are).
extern "C" {
void dsyevd_(const char* jobz, const char* uplo, const blasint* n, double* a, const blasint* lda, double* w,
             double* work, const blasint* lwork, blasint* iwork, const blasint* liwork, blasint* info, size_t,
             size_t);
void dgesdd_(const char* jobz, const blasint* m, const blasint* n, double* a, const blasint* lda, double* s, double* u,
             const blasint* ldu, double* vt, const blasint* ldvt, double* work, const blasint* lwork, blasint* iwork,
             blasint* info, size_t);
void dgetrf_(const blasint* m, const blasint* n, double* a, const blasint* lda, blasint* ipiv, blasint* info);
void dgetrs_(const char* trans, const blasint* n, const blasint* nrhs, const double* a, const blasint* lda,
             const blasint* ipiv, double* b, const blasint* ldb, blasint* info, size_t);
}
#endif

namespace imprint {
namespace cpu {

#ifdef IMPRINT_HAVE_LAPACK

namespace {

// IMPRINT_BLAS=none at run time turns OpenBLAS off for the GEMM (blas.cc) and,
// read the same way here, LAPACK too: lib/ then runs its JavaScript routines.
bool lapack_off() {
  static const bool off = [] {
    const char* v = std::getenv("IMPRINT_BLAS");
    return v != nullptr && std::strcmp(v, "none") == 0;
  }();
  return off;
}

void require(const char* op) {
  if (lapack_off()) fail(ErrorCode::Unsupported, std::string(op) + ": LAPACK is off (IMPRINT_BLAS=none)");
}

blasint dim(int64_t v, const char* op, const char* what) {
  if (v < 0 || v > std::numeric_limits<blasint>::max()) {
    fail(ErrorCode::InvalidArgument,
         std::string(op) + ": " + what + " " + std::to_string(v) + " is out of LAPACK's range");
  }
  return static_cast<blasint>(v);
}

void check_finite(const double* a, int64_t count, const char* op) {
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(a[i])) fail(ErrorCode::InvalidArgument, std::string(op) + ": the matrix has non-finite values");
  }
}

// A workspace size from a query (LAPACK returns it as a double).
blasint workspace(double queried) { return static_cast<blasint>(std::ceil(queried)); }

void check_info(blasint info, const char* op, const char* routine) {
  if (info < 0) {
    fail(ErrorCode::Internal, std::string(op) + ": " + routine + " rejected argument " + std::to_string(-info));
  }
}

}  // namespace

bool lapack_available() { return !lapack_off(); }

std::string lapack_name() {
  if (lapack_off()) return "none: OpenBLAS's LAPACK linked but off (IMPRINT_BLAS=none)";
  return std::string("LAPACK from OpenBLAS (") + openblas_get_config() + ")";
}

void symmetric_eigen(const double* a, int64_t n64, double* values, double* vectors) {
  const char* op = "symmetricEigen";
  require(op);
  const blasint n = dim(n64, op, "size");
  if (n == 0) return;
  const size_t nn = static_cast<size_t>(n) * static_cast<size_t>(n);
  check_finite(a, static_cast<int64_t>(nn), op);
  // Row-major a read as column-major is aᵀ; the row-major lower triangle is the column-major upper one.
  std::vector<double> z(a, a + nn);
  std::vector<double> w(static_cast<size_t>(n));
  const char jobz = 'V', uplo = 'U';
  blasint info = 0, lwork = -1, liwork = -1, iwork_size = 0;
  double work_size = 0;
  dsyevd_(&jobz, &uplo, &n, z.data(), &n, w.data(), &work_size, &lwork, &iwork_size, &liwork, &info, 1, 1);
  check_info(info, op, "dsyevd");
  lwork = workspace(work_size);
  liwork = iwork_size;
  std::vector<double> work(static_cast<size_t>(lwork));
  std::vector<blasint> iwork(static_cast<size_t>(liwork));
  dsyevd_(&jobz, &uplo, &n, z.data(), &n, w.data(), work.data(), &lwork, iwork.data(), &liwork, &info, 1, 1);
  check_info(info, op, "dsyevd");
  if (info > 0) {
    fail(ErrorCode::Internal, std::string(op) + ": the eigen-decomposition of a " + std::to_string(n) + "×" +
                                  std::to_string(n) + " matrix did not converge (LAPACK dsyevd info " +
                                  std::to_string(info) + ")");
  }
  // LAPACK: ascending values, eigenvector j in column j (contiguous). Wanted: descending, as rows.
  for (blasint i = 0; i < n; ++i) {
    const size_t src = static_cast<size_t>(n - 1 - i);
    values[i] = w[src];
    std::copy(z.begin() + src * n, z.begin() + (src + 1) * n, vectors + static_cast<size_t>(i) * n);
  }
}

void svd(const double* a, int64_t m64, int64_t n64, double* s, double* u, double* vt) {
  const char* op = "svd";
  require(op);
  const blasint m = dim(m64, op, "rows"), n = dim(n64, op, "columns");
  const blasint k = std::min(m, n);
  if (k == 0) return;
  const size_t mn = static_cast<size_t>(m) * static_cast<size_t>(n);
  check_finite(a, static_cast<int64_t>(mn), op);
  // Row-major a [m, n] is column-major aᵀ [n, m] = U'·S·V'ᵀ, so a = V'·S·U'ᵀ: column-major V'ᵀ
  // [k, m] is row-major u [m, k] and column-major U' [n, k] is row-major vt [k, n]. No copies.
  std::vector<double> at(a, a + mn);  // dgesdd overwrites its input
  std::vector<blasint> iwork(static_cast<size_t>(k) * 8);
  const char jobz = 'S';
  blasint info = 0, lwork = -1;
  double work_size = 0;
  dgesdd_(&jobz, &n, &m, at.data(), &n, s, vt, &n, u, &k, &work_size, &lwork, iwork.data(), &info, 1);
  check_info(info, op, "dgesdd");
  lwork = workspace(work_size);
  std::vector<double> work(static_cast<size_t>(lwork));
  dgesdd_(&jobz, &n, &m, at.data(), &n, s, vt, &n, u, &k, work.data(), &lwork, iwork.data(), &info, 1);
  check_info(info, op, "dgesdd");
  if (info > 0) {
    fail(ErrorCode::Internal, std::string(op) + ": the SVD of a " + std::to_string(m) + "×" + std::to_string(n) +
                                  " matrix did not converge (LAPACK dgesdd info " + std::to_string(info) + ")");
  }
}

int64_t solve(const double* a, int64_t n64, const double* b, int64_t nrhs64, double pivot_tol, double* x) {
  const char* op = "solve";
  require(op);
  const blasint n = dim(n64, op, "size"), nrhs = dim(nrhs64, op, "right-hand sides");
  if (n == 0) return -1;
  const size_t nn = static_cast<size_t>(n) * static_cast<size_t>(n);
  check_finite(a, static_cast<int64_t>(nn), op);
  double scale = 0;
  for (size_t i = 0; i < nn; ++i) scale = std::max(scale, std::abs(a[i]));
  // Column-major copies (transposes of the row-major inputs): LU must pivot on a's rows, as solveJs does.
  std::vector<double> lu(nn);
  for (blasint i = 0; i < n; ++i)
    for (blasint j = 0; j < n; ++j) lu[static_cast<size_t>(j) * n + i] = a[static_cast<size_t>(i) * n + j];
  std::vector<blasint> ipiv(static_cast<size_t>(n));
  blasint info = 0;
  dgetrf_(&n, &n, lu.data(), &n, ipiv.data(), &info);
  check_info(info, op, "dgetrf");
  // info > 0 (an exactly zero pivot) is caught here too: the factorisation is complete either way.
  for (blasint k = 0; k < n; ++k) {
    if (std::abs(lu[static_cast<size_t>(k) * n + k]) <= pivot_tol * scale) return k;
  }
  if (nrhs == 0) return -1;
  std::vector<double> xt(static_cast<size_t>(n) * static_cast<size_t>(nrhs));
  for (blasint i = 0; i < n; ++i)
    for (blasint j = 0; j < nrhs; ++j) xt[static_cast<size_t>(j) * n + i] = b[static_cast<size_t>(i) * nrhs + j];
  const char trans = 'N';
  dgetrs_(&trans, &n, &nrhs, lu.data(), &n, ipiv.data(), xt.data(), &n, &info, 1);
  check_info(info, op, "dgetrs");
  for (blasint i = 0; i < n; ++i)
    for (blasint j = 0; j < nrhs; ++j) x[static_cast<size_t>(i) * nrhs + j] = xt[static_cast<size_t>(j) * n + i];
  return -1;
}

#else

namespace {
constexpr const char* kNone = "this build has no LAPACK (no OpenBLAS, or one whose LAPACK did not link)";
[[noreturn]] void not_built(const char* op) { fail(ErrorCode::Unsupported, std::string(op) + ": " + kNone); }
}  // namespace

bool lapack_available() { return false; }
std::string lapack_name() { return std::string("none: ") + kNone; }
void symmetric_eigen(const double*, int64_t, double*, double*) { not_built("symmetricEigen"); }
void svd(const double*, int64_t, int64_t, double*, double*, double*) { not_built("svd"); }
int64_t solve(const double*, int64_t, const double*, int64_t, double, double*) { not_built("solve"); }

#endif

}  // namespace cpu
}  // namespace imprint
