// The attention a query pays to chosen key tokens, and its gradient, on the
// GPU: the twin of csrc/cpu/attn_token_map.cc (ops/attn_token_map.cc has the
// formulas). Probabilities are recomputed from the saved lse; nothing of size
// [Nq, Nk] is stored. The backward runs three kernels: c_i = Σ_t dm_ti·p_iτt per
// query row (into scratch), then dq with one block per query row and dk with
// one block per key row, each block staging ∂L/∂s for a chunk of the other side
// in shared memory. f32 arithmetic; sums run in another order than the CPU's.
#include <cmath>

#include "core/args/attn.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "float_dispatch.cuh"
#include "kernels.cuh"
#include "scratch.cuh"

namespace imprint {
namespace cuda {
namespace {

constexpr int kChunk = 128;  // threads per block of the dq/dk kernels, and rows staged per pass

template <class T>
__device__ float dot_row(const float* a, const T* b, int64_t d) {
  float s = 0.f;
  for (int64_t x = 0; x < d; ++x) s += a[x] * load(b[x]);
  return s;
}

template <class T>
__device__ float dot_rows(const T* a, const T* b, int64_t d) {
  float s = 0.f;
  for (int64_t x = 0; x < d; ++x) s += load(a[x]) * load(b[x]);
  return s;
}

__device__ float probability(float score, float lse) { return isinf(lse) && lse < 0 ? 0.f : expf(score - lse); }

template <class T>
__global__ void token_map_forward_kernel(AttentionTokenMapArgs a) {
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const int64_t n = a.batch * a.count * a.nq;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t i = e % a.nq, t = (e / a.nq) % a.count, b = e / (a.nq * a.count);
    float sum = 0.f;
    for (int64_t h = 0; h < a.heads; ++h) {
      const int64_t bh = b * a.heads + h;
      const float s = a.scale * dot_rows(q + (bh * a.nq + i) * a.d, k + (bh * a.nk + a.tokens[t]) * a.d, a.d);
      sum += probability(s, a.lse[bh * a.nq + i]);
    }
    a.maps[e] = sum / static_cast<float>(a.heads);
  }
}

// c[bh, i] = Σ_t dm[b, t, i]·p(i, τt)
template <class T>
__global__ void token_weight_kernel(AttentionTokenMapArgs a, float* c) {
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const int64_t n = a.batch * a.heads * a.nq;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t i = e % a.nq, bh = e / a.nq, b = bh / a.heads;
    float sum = 0.f;
    for (int t = 0; t < a.count; ++t) {
      const float s = a.scale * dot_rows(q + e * a.d, k + (bh * a.nk + a.tokens[t]) * a.d, a.d);
      sum += a.dmaps[(b * a.count + t) * a.nq + i] * probability(s, a.lse[e]);
    }
    c[e] = sum;
  }
}

// ∂L/∂s_ij without the factor scale/H: −c_i·p_ij plus dm_ti·p_ij at each followed key j = τt.
__device__ float score_grad(const AttentionTokenMapArgs& a, int64_t b, int64_t i, int64_t j, float p, float c) {
  float w = -c * p;
  for (int t = 0; t < a.count; ++t) {
    if (a.tokens[t] == j) w += a.dmaps[(b * a.count + t) * a.nq + i] * p;
  }
  return w;
}

// One block per (bh, i): dq_i = (scale/H)·Σ_j w_ij·k_j.
template <class T>
__global__ void token_map_dq_kernel(AttentionTokenMapArgs a, const float* c) {
  extern __shared__ float shared[];
  float* qi = shared;            // [d]
  float* w = shared + a.d;       // [kChunk]
  const int64_t row = blockIdx.x, bh = row / a.nq, i = row % a.nq, b = bh / a.heads;
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k) + bh * a.nk * a.d;
  for (int64_t x = threadIdx.x; x < a.d; x += blockDim.x) qi[x] = load(q[row * a.d + x]);
  __syncthreads();
  const float lse = a.lse[row], ci = c[row];
  // Each thread owns the columns x ≡ threadIdx.x (mod blockDim.x); at most 4 per
  // thread for head_dim ≤ 4·kChunk, checked by the launcher.
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t j0 = 0; j0 < a.nk; j0 += kChunk) {
    const int64_t j = j0 + threadIdx.x;
    if (j < a.nk) w[threadIdx.x] = score_grad(a, b, i, j, probability(a.scale * dot_row(qi, k + j * a.d, a.d), lse), ci);
    __syncthreads();
    const int64_t span = min(static_cast<int64_t>(kChunk), a.nk - j0);
    for (int r = 0; r < 4; ++r) {
      const int64_t x = threadIdx.x + r * blockDim.x;
      if (x >= a.d) break;
      float s = 0.f;
      for (int64_t jj = 0; jj < span; ++jj) s += w[jj] * load(k[(j0 + jj) * a.d + x]);
      acc[r] += s;
    }
    __syncthreads();
  }
  T* dq = static_cast<T*>(a.dq);
  const float factor = a.scale / static_cast<float>(a.heads);
  for (int r = 0; r < 4; ++r) {
    const int64_t x = threadIdx.x + r * blockDim.x;
    if (x < a.d) dq[row * a.d + x] = store<T>(factor * acc[r]);
  }
}

// One block per (bh, j): dk_j = (scale/H)·Σ_i w_ij·q_i.
template <class T>
__global__ void token_map_dk_kernel(AttentionTokenMapArgs a, const float* c) {
  extern __shared__ float shared[];
  float* kj = shared;            // [d]
  float* w = shared + a.d;       // [kChunk]
  const int64_t row = blockIdx.x, bh = row / a.nk, j = row % a.nk, b = bh / a.heads;
  const T* q = static_cast<const T*>(a.q) + bh * a.nq * a.d;
  const T* k = static_cast<const T*>(a.k);
  for (int64_t x = threadIdx.x; x < a.d; x += blockDim.x) kj[x] = load(k[row * a.d + x]);
  __syncthreads();
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t i0 = 0; i0 < a.nq; i0 += kChunk) {
    const int64_t i = i0 + threadIdx.x;
    if (i < a.nq) {
      const float p = probability(a.scale * dot_row(kj, q + i * a.d, a.d), a.lse[bh * a.nq + i]);
      w[threadIdx.x] = score_grad(a, b, i, j, p, c[bh * a.nq + i]);
    }
    __syncthreads();
    const int64_t span = min(static_cast<int64_t>(kChunk), a.nq - i0);
    for (int r = 0; r < 4; ++r) {
      const int64_t x = threadIdx.x + r * blockDim.x;
      if (x >= a.d) break;
      float s = 0.f;
      for (int64_t ii = 0; ii < span; ++ii) s += w[ii] * load(q[(i0 + ii) * a.d + x]);
      acc[r] += s;
    }
    __syncthreads();
  }
  T* dk = static_cast<T*>(a.dk);
  const float factor = a.scale / static_cast<float>(a.heads);
  for (int r = 0; r < 4; ++r) {
    const int64_t x = threadIdx.x + r * blockDim.x;
    if (x < a.d) dk[row * a.d + x] = store<T>(factor * acc[r]);
  }
}

void token_map_forward_cuda(const AttentionTokenMapArgs& a) {
  const int64_t n = a.batch * a.count * a.nq;
  if (n == 0) return;
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, "attention_token_map_forward", T,
                              token_map_forward_kernel<T><<<grid_size(n), kThreads, 0, current_stream()>>>(a));
  check_launch("attention_token_map_forward");
}

void token_map_backward_cuda(const AttentionTokenMapArgs& a) {
  const char* op = "attention_token_map_backward";
  const int64_t rows_q = a.batch * a.heads * a.nq, rows_k = a.batch * a.heads * a.nk;
  const size_t elem = dtype_size(a.dtype);
  cudaStream_t stream = current_stream();
  if (rows_q == 0 || rows_k == 0 || a.d == 0) {
    // Nothing flows: zero gradients (an empty side has nothing to zero).
    if (rows_q > 0) check(cudaMemsetAsync(a.dq, 0, static_cast<size_t>(rows_q * a.d) * elem, stream), "cudaMemsetAsync");
    if (rows_k > 0) check(cudaMemsetAsync(a.dk, 0, static_cast<size_t>(rows_k * a.d) * elem, stream), "cudaMemsetAsync");
    return;
  }
  if (a.d > 4 * kChunk) {
    fail(ErrorCode::Unsupported, std::string(op) + " on cuda supports head_dim up to " + std::to_string(4 * kChunk) +
                                     ", got " + std::to_string(a.d));
  }
  if (rows_q > INT32_MAX || rows_k > INT32_MAX) fail(ErrorCode::Unsupported, std::string(op) + ": too many rows for one grid");
  Scratch scratch(static_cast<size_t>(rows_q) * sizeof(float), op);
  float* c = scratch.as<float>();
  const size_t shared = static_cast<size_t>(a.d + kChunk) * sizeof(float);
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, op, T, {
    token_weight_kernel<T><<<grid_size(rows_q), kThreads, 0, stream>>>(a, c);
    token_map_dq_kernel<T><<<static_cast<unsigned>(rows_q), kChunk, shared, stream>>>(a, c);
    token_map_dk_kernel<T><<<static_cast<unsigned>(rows_k), kChunk, shared, stream>>>(a, c);
  });
  check_launch(op);
}

}  // namespace

IMPRINT_REGISTER_KERNEL(attention_token_map_forward, CUDA, AttentionTokenMapArgs, token_map_forward_cuda);
IMPRINT_REGISTER_KERNEL(attention_token_map_backward, CUDA, AttentionTokenMapArgs, token_map_backward_cuda);

}  // namespace cuda
}  // namespace imprint
