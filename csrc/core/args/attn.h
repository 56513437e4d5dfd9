// Launch descriptions for fused scaled-dot-product attention
// (o = softmax(q·kᵀ·scale + causal mask)·v), shared by CPU and CUDA kernels.
// Tensors are contiguous; batch and heads index the leading dims together.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace imprint {

// K/V adapters applied as the kernels load K and V tiles, so adapted keys and
// values are never written out (DESIGN.md §2):
//   k_eff[b,h,j,c] = k[b,h,j,c] + k_delta[b,h,j,c] + k_scale·Σ_t k_u[b,j,t]·k_up[h·d + c, t]
// and the same for v. k_delta is a delta K (Custom Diffusion's context·ΔWᵀ
// beside a cached base K); k_u = context·downᵀ and k_up are a LoRA on the K
// projection (up [heads·d, rank]). A replacement K is simply passed as k.
// Every pointer may be null (that term is absent).
struct AttentionKvAdapter {
  const void* k_delta = nullptr;  // [batch, heads, nk, d]
  const void* v_delta = nullptr;  // [batch, heads, nk, dv]
  const void* k_u = nullptr;      // [batch, nk, k_rank]
  const void* k_up = nullptr;     // [heads·d, k_rank]
  const void* v_u = nullptr;      // [batch, nk, v_rank]
  const void* v_up = nullptr;     // [heads·dv, v_rank]
  int64_t k_rank = 0, v_rank = 0;
  float k_scale = 1, v_scale = 1;
  bool any() const { return k_delta || v_delta || k_u || v_u; }
};

// The LoRA factors' gradients the backward adds when k_u / v_u are given
// (dk and dv themselves are the gradients of k_eff: of k and of k_delta alike).
struct AttentionKvAdapterGrads {
  void* dk_u = nullptr;   // [batch, nk, k_rank]
  void* dk_up = nullptr;  // [heads·d, k_rank]
  void* dv_u = nullptr;   // [batch, nk, v_rank]
  void* dv_up = nullptr;  // [heads·dv, v_rank]
};

struct AttentionForwardArgs {
  DType dtype;      // of q, k, v and o; lse is always f32
  const void* q;    // [batch, heads, nq, d]
  const void* k;    // [batch, heads, nk, d]
  const void* v;    // [batch, heads, nk, dv]
  void* o;          // [batch, heads, nq, dv]
  float* lse;       // [batch, heads, nq]: log Σ_j exp(scale·q_i·k_j), -inf for rows with no visible key
  int64_t batch, heads, nq, nk, d, dv;
  float scale;
  bool causal;      // query i sees keys j ≤ i + (nk − nq)
  AttentionKvAdapter kv{};
};

struct AttentionBackwardArgs {
  DType dtype;        // of every tensor but lse
  const void* dout;   // [batch, heads, nq, dv]
  const void* q;      // [batch, heads, nq, d]
  const void* k;      // [batch, heads, nk, d]
  const void* v;      // [batch, heads, nk, dv]
  const void* o;      // [batch, heads, nq, dv], the forward's output
  const float* lse;   // [batch, heads, nq], the forward's saved log-sum-exp
  void* dq;           // [batch, heads, nq, d]
  void* dk;           // [batch, heads, nk, d]
  void* dv_grad;      // [batch, heads, nk, dv]
  int64_t batch, heads, nq, nk, d, dv;
  float scale;
  bool causal;
  AttentionKvAdapter kv{};
  AttentionKvAdapterGrads kv_grads{};
};

}  // namespace imprint
