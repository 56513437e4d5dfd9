// The addon's LAPACK entries (csrc/cpu/lapack.h) on row-major Float64Arrays,
// for lib/concepts/linalg.ts. They run synchronously on the JavaScript thread:
// their callers (truncated SVD, the closed-form merge) are synchronous, the
// matrices are host arrays no queued op touches, and OpenBLAS threads each
// call itself. Outputs are allocated as Float64Arrays first and LAPACK writes
// into them, so nothing is copied back.
#include "napi/linalg_napi.h"

#include <algorithm>
#include <cmath>

#include "cpu/lapack.h"
#include "napi/convert.h"
#include "napi/errors.h"

namespace imprint {
namespace napi {
namespace {

using Info = const Napi::CallbackInfo&;

int64_t read_dim(const Napi::Value& v, const char* op, const char* what) {
  const double d = to_number(v, op, what);
  if (!(d >= 0 && d <= 2147483647.0) || std::floor(d) != d) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": " + what + " must be an integer from 0 to 2^31 - 1");
  }
  return static_cast<int64_t>(d);
}

// A Float64Array of exactly `count` values.
const double* read_matrix(const Napi::Value& v, size_t count, const char* op, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": " + what + " must be a Float64Array");
  }
  Napi::Float64Array a = v.As<Napi::Float64Array>();
  if (a.ElementLength() != count) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": " + what + " has " + std::to_string(a.ElementLength()) +
                                         " values, its shape needs " + std::to_string(count));
  }
  return a.Data();
}

Napi::Value info_fn(Info info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("lapack", cpu::lapack_available());
  o.Set("name", cpu::lapack_name());
  return o;
}

// linalgSymmetricEigen(a, n) -> { values [n] descending, vectors [n·n], row i for values[i] }
Napi::Value eigen_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "symmetricEigen";
    const int64_t n = read_dim(info[1], op, "n");
    const double* a = read_matrix(info[0], static_cast<size_t>(n * n), op, "the matrix");
    Napi::Float64Array values = Napi::Float64Array::New(info.Env(), static_cast<size_t>(n));
    Napi::Float64Array vectors = Napi::Float64Array::New(info.Env(), static_cast<size_t>(n * n));
    cpu::symmetric_eigen(a, n, values.Data(), vectors.Data());
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("values", values);
    o.Set("vectors", vectors);
    return o;
  });
}

// linalgSvd(a, rows, cols) -> { s [k], u [rows·k], vt [k·cols] }, k = min(rows, cols)
Napi::Value svd_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "svd";
    const int64_t m = read_dim(info[1], op, "rows"), n = read_dim(info[2], op, "cols");
    const int64_t k = std::min(m, n);
    const double* a = read_matrix(info[0], static_cast<size_t>(m * n), op, "the matrix");
    Napi::Float64Array s = Napi::Float64Array::New(info.Env(), static_cast<size_t>(k));
    Napi::Float64Array u = Napi::Float64Array::New(info.Env(), static_cast<size_t>(m * k));
    Napi::Float64Array vt = Napi::Float64Array::New(info.Env(), static_cast<size_t>(k * n));
    cpu::svd(a, m, n, s.Data(), u.Data(), vt.Data());
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("s", s);
    o.Set("u", u);
    o.Set("vt", vt);
    return o;
  });
}

// linalgSolve(a, n, b, nrhs, pivotTolerance) -> { x [n·nrhs] | null, singularPivot }:
// x null and singularPivot k ≥ 0 when step k's pivot is at most pivotTolerance·max|a|.
Napi::Value solve_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "solve";
    const int64_t n = read_dim(info[1], op, "n"), nrhs = read_dim(info[3], op, "nrhs");
    const double* a = read_matrix(info[0], static_cast<size_t>(n * n), op, "the matrix");
    const double* b = read_matrix(info[2], static_cast<size_t>(n * nrhs), op, "the right-hand side");
    const double tol = to_number(info[4], op, "pivotTolerance");
    if (!(tol >= 0 && tol < 1)) {
      fail(ErrorCode::InvalidArgument, std::string(op) + ": pivotTolerance must be in [0, 1)");
    }
    Napi::Float64Array x = Napi::Float64Array::New(info.Env(), static_cast<size_t>(n * nrhs));
    const int64_t singular = cpu::solve(a, n, b, nrhs, tol, x.Data());
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("x", singular >= 0 ? info.Env().Null() : static_cast<Napi::Value>(x));
    o.Set("singularPivot", static_cast<double>(singular));
    return o;
  });
}

}  // namespace

void register_linalg(Napi::Env env, Napi::Object exports) {
  exports.Set("linalgInfo", Napi::Function::New(env, info_fn, "linalgInfo"));
  exports.Set("linalgSymmetricEigen", Napi::Function::New(env, eigen_fn, "linalgSymmetricEigen"));
  exports.Set("linalgSvd", Napi::Function::New(env, svd_fn, "linalgSvd"));
  exports.Set("linalgSolve", Napi::Function::New(env, solve_fn, "linalgSolve"));
}

}  // namespace napi
}  // namespace imprint
