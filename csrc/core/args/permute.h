// Launch description for swapping the two middle dims of a contiguous 4-D
// tensor, [a, b, c, d] → [a, c, b, d]: the head split [B, T, heads, hd] →
// [B, heads, T, hd] before attention, and its inverse after.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace imprint {

struct SwapDims12Args {
  DType dtype;
  const void* x;  // [a, b, c, d]
  void* y;        // [a, c, b, d]
  int64_t a, b, c, d;
};

}  // namespace imprint
