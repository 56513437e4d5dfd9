// Activation loops over a contiguous range that other CPU kernels reuse (the
// fused GroupNorm + SiLU), defined in act.cc with its instruction-set clones.
#pragma once
#include <cstdint>

namespace imprint {
namespace cpu {

// y[i] = x[i]·σ(x[i]) for i < n; x and y must not overlap.
void silu_forward_range(const float* __restrict x, float* __restrict y, int64_t n);

}  // namespace cpu
}  // namespace imprint
