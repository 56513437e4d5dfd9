// Launch descriptions for group norm and layer norm, shared by CPU and CUDA
// kernels. Statistics are per normalised slice: mean and rstd = 1/sqrt(var + eps)
// with the biased variance, as PyTorch saves them for the backward pass.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace imprint {

// x viewed as [n, c, inner] (inner: the product of the spatial dims); each of
// the n·groups slices [c/groups, inner] is one contiguous run of x.
struct GroupNormForwardArgs {
  DType dtype;
  const void* x;       // [n, c, inner]
  const void* weight;  // [c] or nullptr (scale 1)
  const void* bias;    // [c] or nullptr (shift 0)
  void* y;             // [n, c, inner]; may be nullptr when act is set (not kept)
  void* mean;          // [n, groups]
  void* rstd;          // [n, groups]
  int64_t n, c, inner, groups;
  double eps;
  // GroupNorm + SiLU fused (every UNet and VAE resnet): when set, silu(y) is
  // written here as well, computed from y as stored (rounded to dtype), so
  // the result is bit-identical to silu_forward on y, with one pass less.
  void* act = nullptr;  // [n, c, inner] or nullptr
};

struct GroupNormBackwardArgs {
  DType dtype;
  const void* dy;      // [n, c, inner]
  const void* x;       // [n, c, inner]
  const void* mean;    // [n, groups], from the forward
  const void* rstd;    // [n, groups], from the forward
  const void* weight;  // [c] or nullptr (scale 1)
  void* dx;            // [n, c, inner]
  void* dweight;       // [c] or nullptr when not asked for
  void* dbias;         // [c] or nullptr when not asked for
  int64_t n, c, inner, groups;
};

// x viewed as [rows, d], normalised over d (the last dimension).
struct LayerNormForwardArgs {
  DType dtype;
  const void* x;       // [rows, d]
  const void* weight;  // [d] or nullptr (scale 1)
  const void* bias;    // [d] or nullptr (shift 0)
  void* y;             // [rows, d]
  void* mean;          // [rows]
  void* rstd;          // [rows]
  int64_t rows, d;
  double eps;
};

struct LayerNormBackwardArgs {
  DType dtype;
  const void* dy;      // [rows, d]
  const void* x;       // [rows, d]
  const void* mean;    // [rows], from the forward
  const void* rstd;    // [rows], from the forward
  const void* weight;  // [d] or nullptr (scale 1)
  void* dx;            // [rows, d]
  void* dweight;       // [d] or nullptr when not asked for
  void* dbias;         // [d] or nullptr when not asked for
  int64_t rows, d;
};

}  // namespace imprint
