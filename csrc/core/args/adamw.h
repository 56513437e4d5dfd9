// Launch description for one AdamW step, shared by the CPU kernel
// (csrc/cpu/adamw.cc) and the CUDA one (cuda/adamw.cu). The plan in
// csrc/ops/adamw.cc validates the tensors and fills it, scalars included.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace imprint {

// One step's scalars, derived once by the plan (csrc/ops/adamw.cc) from lr,
// β1, β2, eps, weight decay and the step number t in double, then rounded to
// f32 as PyTorch rounds a Python float applied to an f32 tensor; the CPU and
// CUDA kernels both use exactly these:
//   decay = 1 − lr·wd,  neg_step_size = −lr / (1 − β1^t),  bc2_sqrt = √(1 − β2^t)
//   m ← m·b1 + one_minus_b1·g;  v ← v·b2 + (one_minus_b2·g)·g
//   p ← p·decay + neg_step_size · (m / (√v / bc2_sqrt + eps))
struct AdamwScalars {
  float decay, b1, one_minus_b1, b2, one_minus_b2, neg_step_size, bc2_sqrt, eps;
};

// One torch.optim.AdamW step (decoupled weight decay, bias-corrected moments)
// into new tensors. Mixed precision: the state (param, moments) is f32, the
// grad may be f16/bf16, and param_copy_out (when set) gets the updated param
// rounded to copy_dtype, the model's low-precision copy of its f32 master.
struct AdamwStepArgs {
  DType dtype;       // param, moments and their outputs
  DType grad_dtype;  // == dtype unless dtype is f32
  DType copy_dtype;  // of param_copy_out
  const void* param;
  const void* grad;
  const void* exp_avg;
  const void* exp_avg_sq;
  void* param_out;
  void* exp_avg_out;
  void* exp_avg_sq_out;
  void* param_copy_out;  // nullptr: no copy
  int64_t numel;
  AdamwScalars scalars;  // the step's scalars, derived once by the plan
};

}  // namespace imprint
