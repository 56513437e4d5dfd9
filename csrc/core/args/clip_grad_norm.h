// Launch description for gradient-norm clipping, shared by the CPU kernel
// (csrc/cpu/clip_grad_norm.cc) and the CUDA one (cuda/clip_grad_norm.cu). The
// plan in csrc/ops/clip_grad_norm.cc validates the tensors and fills it.
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace imprint {

// torch.nn.utils.clip_grad_norm_ over several tensors: total = ‖all grads‖_p
// (in double), each grad scaled by min(1, max_norm / (total + 1e-6)).
struct ClipGradNormArgs {
  DType dtype;
  std::vector<const void*> grads;
  std::vector<void*> grads_out;
  std::vector<int64_t> numels;
  void* total_norm;  // shape []
  double max_norm;
  double norm_type;  // > 0, or +infinity
};

}  // namespace imprint
