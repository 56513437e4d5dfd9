// Launch descriptions for fused scaled-dot-product attention
// (o = softmax(q·kᵀ·scale + causal mask)·v), shared by CPU and CUDA kernels.
// Tensors are contiguous; batch and heads index the leading dims together.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace imprint {

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
};

}  // namespace imprint

namespace imprint {

// The most tokens one attention_token_map call follows: CLIP's context length
// (Attend-and-Excite reads every token of the prompt); they travel by value in
// the args (308 bytes, well inside a kernel's parameter space).
constexpr int kTokenMapMaxTokens = 77;

// m[b, t, i] = (1/H) Σ_h exp(scale·q[b,h,i]·k[b,h,tokens[t]] − lse[b,h,i]): the
// head-averaged attention probability of query i on key tokens[t], from the
// forward's saved log-sum-exp (no score matrix). The backward takes dm and gives
// dq, dk, including the part through lse (every key's probability moves).
struct AttentionTokenMapArgs {
  DType dtype;          // of q, k (and dq, dk); lse, maps and dmaps are f32
  const void* q;        // [batch, heads, nq, d]
  const void* k;        // [batch, heads, nk, d]
  const float* lse;     // [batch, heads, nq]
  float* maps;          // forward: [batch, tokens, nq]
  const float* dmaps;   // backward: [batch, tokens, nq]
  void* dq;             // backward: [batch, heads, nq, d]
  void* dk;             // backward: [batch, heads, nk, d]
  int64_t batch, heads, nq, nk, d;
  int32_t count;        // tokens followed
  int32_t tokens[kTokenMapMaxTokens];
  float scale;
};

}  // namespace imprint
