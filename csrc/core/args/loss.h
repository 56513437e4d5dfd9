// Launch description for the masked MSE loss and its gradient, shared by the
// CPU kernels (csrc/cpu/loss.cc) and the CUDA ones (cuda/loss.cu). The plans
// in csrc/ops/loss.cc validate shapes and fill it.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/kernel_args.h"

namespace imprint {

// Masked mean squared error. The mask is broadcast over pred's shape; dims
// are coalesced by the plan, so mask_strides (0 = broadcast) over `shape`
// usually has 1 to 3 dims. denominator = Σ mask × broadcast_factor, where
// broadcast_factor = numel / mask_numel (each mask element is repeated that
// many times), or numel when there is no mask.
struct MseLossArgs {
  DType dtype;
  const void* pred;    // [numel]
  const void* target;  // [numel]
  const void* mask;    // mask_numel elements, or nullptr
  void* out;           // forward: the loss, shape []; backward: dpred [numel]
  int64_t numel;
  int64_t mask_numel;
  int ndim;
  int64_t shape[kMaxDims];
  int64_t mask_strides[kMaxDims];
  double grad_scale;   // backward only: d loss
};

}  // namespace imprint
