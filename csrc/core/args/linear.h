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

namespace imprint {

// Projection with a low-rank modulation, the LoRA form left unmerged:
//   u = x·downᵀ,  y = x·Wᵀ + b + scale·u·upᵀ
// down [r, in] and up [out, r] are shared by every row, or given per sample
// ([samples, r, in], [samples, out, r]) when each of the x's `samples` leading
// slices has its own (as the tuning encoder predicts them per image). W + s·up·down
// is never formed. u is returned for the backward.
struct LinearLowRankForwardArgs {
  DType dtype;
  const void* x;     // [samples · rows_per_sample, in]
  const void* w;     // [out, in]
  const void* down;  // [r, in], or [samples, r, in] when down_per_sample
  const void* up;    // [out, r], or [samples, out, r] when up_per_sample
  const void* bias;  // [out] or nullptr
  void* y;           // [samples · rows_per_sample, out]
  void* u;           // [samples · rows_per_sample, r]
  int64_t samples, rows_per_sample, in, out, rank;
  bool down_per_sample, up_per_sample;
  float scale;
};

// g = dy·up;  dx = dy·W + s·g·down;  d_down = s·gᵀ·x;  d_up = s·dyᵀ·u;
// dW = dyᵀ·x;  db = Σ dy. Shared down/up gradients sum over every sample.
struct LinearLowRankBackwardArgs {
  DType dtype;
  const void* dy;  // [samples · rows_per_sample, out]
  const void* x;
  const void* w;
  const void* down;
  const void* up;
  const void* u;   // the forward's u
  void* dx;        // [samples · rows_per_sample, in]
  void* d_down;    // down's shape
  void* d_up;      // up's shape
  void* dw;        // [out, in] or nullptr when not asked for
  void* dbias;     // [out] or nullptr when not asked for
  int64_t samples, rows_per_sample, in, out, rank;
  bool down_per_sample, up_per_sample;
  float scale;
};

}  // namespace imprint
