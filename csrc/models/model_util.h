// Helpers for model graphs (csrc/models): a graph runs as one launch on its
// device queue, and each step plans a registered op and runs it right there,
// so every step gets the op's own shape checks and kernel.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/args/permute.h"
#include "core/backend.h"
#include "core/kernel_registry.h"
#include "ops/op_registry.h"
#include "ops/ops.h"

namespace imprint {
namespace models {

// Runs a planned launch now, on the calling thread; returns all its outputs.
inline std::vector<Tensor> run_now(ops::Launch launch) {
  launch.run();
  if (launch.outputs.empty()) return {launch.output};
  return std::move(launch.outputs);
}

// Runs the registered op `name` now; returns all its outputs.
inline std::vector<Tensor> run_op(const char* name, const ops::OpInputs& inputs, const ops::Attrs& attrs = {}) {
  return run_now(ops::plan_op(name, inputs, attrs));
}

// s·x (scale_forward).
inline Tensor scaled(const Tensor& x, double s) {
  ops::Attrs a;
  a.numbers["factor"] = s;
  return run_op("scale_forward", {&x}, a).front();
}

// [a, b, c, d] → [a, c, b, d] (contiguous), with the swap_dims12 kernel.
inline Tensor swap_dims12(const Tensor& x) {
  Tensor y = Tensor::empty({x.shape[0], x.shape[2], x.shape[1], x.shape[3]}, x.dtype, x.device);
  SwapDims12Args args{x.dtype, x.data(), y.data(), x.shape[0], x.shape[1], x.shape[2], x.shape[3]};
  find_kernel("swap_dims12", x.device)(&args);
  backend_for(x.device).synchronize();
  return y;
}

// [N, C, H, W] ↔ [N, HW, C] (tokens for attention) through the [a, b, c, 1]
// swap. swap_dims12 is its own inverse, so each is the other's gradient too.
inline Tensor to_tokens(const Tensor& x) {
  const int64_t N = x.shape[0], C = x.shape[1], HW = x.shape[2] * x.shape[3];
  return ops::reshape(swap_dims12(ops::reshape(x, {N, C, HW, 1})), {N, HW, C});
}
inline Tensor from_tokens(const Tensor& t, int64_t H, int64_t W) {
  const int64_t N = t.shape[0], C = t.shape[2];
  return ops::reshape(swap_dims12(ops::reshape(t, {N, H * W, C, 1})), {N, C, H, W});
}

}  // namespace models
}  // namespace imprint
