// Double-precision dense linear algebra from LAPACK (the copy inside OpenBLAS),
// for lib/concepts' host-side matrices: truncated SVD of concept deltas and the
// closed-form merge. Matrices are row-major, as JavaScript holds them. Built
// only where the build found LAPACK (IMPRINT_HAVE_LAPACK); elsewhere, and when
// IMPRINT_BLAS=none is set at run time, available() is false and lib/ uses its
// own JavaScript routines.
#pragma once
#include <cstdint>
#include <string>

namespace imprint {
namespace cpu {

// Whether the routines below run (false: each throws Unsupported).
bool lapack_available();
// What provides them ("LAPACK from OpenBLAS 0.3.21 ..."), or why none does.
std::string lapack_name();

// a [n, n] symmetric (the lower triangle is read) = vectorsᵀ·diag(values)·vectors:
// values [n] descending, vectors [n, n] with row i the unit eigenvector of values[i].
void symmetric_eigen(const double* a, int64_t n, double* values, double* vectors);

// Thin SVD a [m, n] = u·diag(s)·vt with k = min(m, n): s [k] descending,
// u [m, k] and vt [k, n] with orthonormal columns and rows.
void svd(const double* a, int64_t m, int64_t n, double* s, double* u, double* vt);

// x [n, nrhs] = a⁻¹·b for a [n, n], by LU with partial pivoting. Returns the
// first step k whose pivot |U(k, k)| is at most pivot_tol·max|a| (the matrix is
// singular or nearly so; x is left unset), or -1 when x was solved.
int64_t solve(const double* a, int64_t n, const double* b, int64_t nrhs, double pivot_tol, double* x);

}  // namespace cpu
}  // namespace imprint
