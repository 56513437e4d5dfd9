// IMPRINT_CUDA_FLOAT_DISPATCH(dtype, op, T, body): runs body with T bound to
// the float element type (float, f16, bf16); any other dtype fails with
// UNSUPPORTED naming `op`. For the nn kernels, which take float tensors only.
#pragma once
#include <string>

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
