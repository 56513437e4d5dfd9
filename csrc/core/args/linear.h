// Launch descriptions for linear (y = x·Wᵀ + b), shared by CPU and CUDA kernels.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace imprint {

struct LinearForwardArgs {
  DType dtype;
  const void* x;     // [rows, in]
  const void* w;     // [out, in]
  const void* bias;  // [out] or nullptr
  void* y;           // [rows, out]
  int64_t rows, in, out;
};

struct LinearBackwardArgs {
  DType dtype;
  const void* dy;  // [rows, out]
  const void* x;   // [rows, in]
  const void* w;   // [out, in]
  void* dx;        // [rows, in]
  void* dw;        // [out, in] or nullptr when not asked for
  void* dbias;     // [out] or nullptr when not asked for
  int64_t rows, in, out;
};

}  // namespace imprint
