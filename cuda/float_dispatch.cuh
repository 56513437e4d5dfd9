// IMPRINT_CUDA_FLOAT_DISPATCH(dtype, op, T, body): runs body with T bound to
// the float element type (float, f16, bf16); any other dtype fails with
// UNSUPPORTED naming `op`. For the nn kernels, which take float tensors only;
// is_float_type and require_float serve the kernels that dispatch by hand.
#pragma once
#include <string>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"
#include "element.cuh"

#define IMPRINT_CUDA_FLOAT_DISPATCH(dtype, op, T, ...)                                                         \
  switch (dtype) {                                                                                             \
    case ::imprint::DType::F32: { using T = float; __VA_ARGS__; break; }                                       \
    case ::imprint::DType::F16: { using T = ::imprint::cuda::f16; __VA_ARGS__; break; }                        \
    case ::imprint::DType::BF16: { using T = ::imprint::cuda::bf16; __VA_ARGS__; break; }                      \
    default:                                                                                                   \
      ::imprint::fail(::imprint::ErrorCode::Unsupported, std::string(op) +                                     \
                                                             " on cuda supports f32, f16 and bf16, got " +     \
                                                             ::imprint::dtype_name(dtype));                    \
  }

namespace imprint {
namespace cuda {

// True for the float element types the nn kernels instantiate (float, f16, bf16).
template <class T>
constexpr bool is_float_type = std::is_same<T, float>::value || is_half<T>;

// Fails with UNSUPPORTED naming `op` unless dtype is f32, f16 or bf16.
inline void require_float(const char* op, DType dtype) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16) {
    fail(ErrorCode::Unsupported, std::string(op) + " on cuda supports f32, f16 and bf16, got " + dtype_name(dtype));
  }
}

}  // namespace cuda
}  // namespace imprint
