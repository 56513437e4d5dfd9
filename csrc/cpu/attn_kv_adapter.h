// K/V adapters on the CPU (core/args/attn.h): the reference forms the CUDA
// kernels apply tile by tile. The CPU twin materialises k_eff and v_eff once
// (77 text keys: small next to the attention itself) and chains the LoRA
// factors' gradients from dk_eff and dv_eff.
#pragma once
#include <cstdint>
#include <vector>

#include "core/args/attn.h"

namespace imprint {
namespace cpu {

// base + delta + scale·u·upᵀ per head, [batch, heads, nk, dim]. delta, u and up may be null.
std::vector<float> adapted_kv(const float* base, const float* delta, const float* u, const float* up, int64_t rank,
                              float scale, int64_t batch, int64_t heads, int64_t nk, int64_t dim);

// From g = ∂L/∂k_eff [batch, heads, nk, dim]:
//   du[b, j, t] = scale·Σ_{h,c} g[b,h,j,c]·up[h·dim + c, t]
//   dup[h·dim + c, t] = scale·Σ_{b,j} g[b,h,j,c]·u[b,j,t]
void kv_lora_grads(const float* g, const float* u, const float* up, int64_t rank, float scale, int64_t batch,
                   int64_t heads, int64_t nk, int64_t dim, float* du, float* dup);

}  // namespace cpu
}  // namespace imprint
