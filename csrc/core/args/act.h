// Launch descriptions for the activation family (SiLU, GELU, quick-GELU,
// GEGLU, softmax, scale), shared by CPU and CUDA kernels. All tensors are
// dense and row-major.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace imprint {

// silu_forward, gelu_forward, quick_gelu_forward: y = f(x), element-wise.
struct ActForwardArgs {
  DType dtype;
  const void* x;  // [numel]
  void* y;        // [numel]
  int64_t numel;
};

// silu_backward, gelu_backward, quick_gelu_backward: dx = dy·f'(x).
struct ActBackwardArgs {
  DType dtype;
  const void* dy;  // [numel]
  const void* x;   // [numel]
  void* dx;        // [numel]
  int64_t numel;
};

// geglu_forward: each row of x is [value | gate]; y = value·gelu(gate).
struct GegluForwardArgs {
  DType dtype;
  const void* x;  // [rows, 2·features]
  void* y;        // [rows, features]
  int64_t rows, features;
};

struct GegluBackwardArgs {
  DType dtype;
  const void* dy;  // [rows, features]
  const void* x;   // [rows, 2·features]
  void* dx;        // [rows, 2·features]: d value, then d gate
  int64_t rows, features;
};

// Softmax over the middle axis of x viewed as [outer, size, inner].
struct SoftmaxForwardArgs {
  DType dtype;
  const void* x;
  void* y;
  int64_t outer, size, inner;
};

// dx = y·(dy − Σ dy·y) along the same axis, from the forward's output y.
struct SoftmaxBackwardArgs {
  DType dtype;
  const void* dy;
  const void* y;
  void* dx;
  int64_t outer, size, inner;
};

// scale_forward: y = x·factor (also its own backward: dx = dy·factor).
struct ScaleArgs {
  DType dtype;
  const void* x;  // [numel]
  void* y;        // [numel]
  int64_t numel;
  double factor;
};

}  // namespace imprint
