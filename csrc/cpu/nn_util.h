// Helpers for the CPU kernels of the neural-network op library.
#pragma once
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace imprint {
namespace cpu {

// The CPU op library computes in f32 (the reference precision); half types run on CUDA.
inline void require_f32(const char* op, DType dtype) {
  if (dtype != DType::F32) {
    fail(ErrorCode::Unsupported, std::string(op) + " on cpu supports f32 only, got " + dtype_name(dtype) +
                                     "; cast to f32 first");
  }
}

}  // namespace cpu
}  // namespace imprint
