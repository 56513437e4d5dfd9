// Fused scaled-dot-product attention, backward, on the GPU: the semantics of
// csrc/cpu/attn.cc (FlashAttention-2's recomputation). With q̃ = q·scale·log2e:
//   delta_i = Σ_c dO_ic·O_ic
//   P = 2^(q̃·kᵀ − lse/ln2) (masked entries 0), dP = dO·vᵀ, dS = P ⊙ (dP − delta)
//   dV = Pᵀ·dO, dK = ln2·dSᵀ·q̃, dQ = scale·dS·K
// Two kernels split the work so that every output element has exactly one
// writer: one block per key tile accumulates that tile's dK and dV over all
// queries, and one block per query tile accumulates its dQ over all keys.
// Both recompute P and dP (seven tile products instead of five), in exchange
// for no atomics, no f32 dQ scratch and bit-for-bit repeatable results.
// Storage may be f32, f16 or bf16; all arithmetic is f32.
//
// SIMT path for every dtype and architecture. What would make it faster:
// mma.sync (f16/bf16, sm_80+) for the five tile products, larger key tiles
// with the products' operands double-buffered through cp.async, and a single
// pass with f32 atomics for dQ where determinism is not wanted.
#include "attention_tile.cuh"
#include "block_reduce.cuh"
#include "core/args/attn.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "float_dispatch.cuh"
#include "kernels.cuh"
#include "scratch.cuh"

namespace imprint {
namespace cuda {
namespace {

using attn::kDimCols;
using attn::kDimRows;

// Square tiles of B queries × B keys: 41.7 KB (DMAX 64) and 43.4 KB (DMAX 160)
// of shared memory per block, under 48 KB.
template <int DMAX> struct BackwardTile;
template <> struct BackwardTile<attn::kSmallDim> {
  static constexpr int B = 32;
};
template <> struct BackwardTile<attn::kLargeDim> {
  static constexpr int B = 16;
};

// delta_i = Σ_c dO_ic·O_ic, one warp per row.
template <class T>
__global__ void attention_delta_kernel(const T* __restrict__ dout, const T* __restrict__ o, float* __restrict__ delta,
                                       int64_t rows, int64_t dv) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    double acc = 0;
    for (int64_t c = lane; c < dv; c += 32) acc += static_cast<double>(load(dout[r * dv + c])) * load(o[r * dv + c]);
    acc = warp_sum(acc);
    if (lane == 0) delta[r] = static_cast<float>(acc);
  }
}

// The block's view of one (batch, head).
template <class T>
struct HeadView {
  const T *q, *k, *v, *dout;
  const float *lse, *delta;
};

template <class T>
__device__ __forceinline__ HeadView<T> head_view(const AttentionBackwardArgs& a, const float* delta, int64_t bh) {
  return {static_cast<const T*>(a.q) + bh * a.nq * a.d, static_cast<const T*>(a.k) + bh * a.nk * a.d,
          static_cast<const T*>(a.v) + bh * a.nk * a.dv, static_cast<const T*>(a.dout) + bh * a.nq * a.dv,
          a.lse + bh * a.nq, delta + bh * a.nq};
}

// Query rows [i0, i0 + rows): their lse in base 2 (as the CPU converts it) and delta; zeros past the end.
template <int B>
__device__ __forceinline__ void load_row_terms(float* lse2, float* row_delta, const float* lse, const float* delta,
                                               int64_t i0, int rows) {
  for (int r = threadIdx.x; r < B; r += blockDim.x) {
    lse2[r] = r < rows ? static_cast<float>(static_cast<double>(lse[i0 + r]) / static_cast<double>(attn::kLn2)) : 0.0f;
    row_delta[r] = r < rows ? delta[i0 + r] : 0.0f;
  }
}

// One score-grid thread's entries of P and dS for query rows sy + (kThreads/B)·i
// and key column sx of the current tiles.
template <int B, int DMAX>
__device__ __forceinline__ void probabilities(const AttentionBackwardArgs& a, const float* qs, const float* dos,
                                              const float* ks, const float* vs, const float* lse2,
                                              const float* row_delta, int64_t i0, int64_t j0, float* p_out,
                                              float* ds_out) {
  constexpr int SQ = DMAX + 1, kScoreRows = attn::kThreads / B, RS = B / kScoreRows;
  const int sx = threadIdx.x % B, sy = threadIdx.x / B;
  float s[RS], dp[RS];
#pragma unroll
  for (int i = 0; i < RS; ++i) s[i] = dp[i] = 0.0f;
  for (int kk = 0; kk < a.d; ++kk) {
    const float kv = ks[sx * SQ + kk];
#pragma unroll
    for (int i = 0; i < RS; ++i) s[i] += qs[(sy + kScoreRows * i) * SQ + kk] * kv;
  }
  for (int kk = 0; kk < a.dv; ++kk) {
    const float vv = vs[sx * SQ + kk];
#pragma unroll
    for (int i = 0; i < RS; ++i) dp[i] += dos[(sy + kScoreRows * i) * SQ + kk] * vv;
  }
#pragma unroll
  for (int i = 0; i < RS; ++i) {
    const int r = sy + kScoreRows * i;
    const bool seen = attn::visible(a.causal, i0 + r, j0 + sx, a.nq, a.nk);
    const float p = seen ? exp2f(s[i] - lse2[r]) : 0.0f;
    p_out[i] = p;
    ds_out[i] = p * (dp[i] - row_delta[r]);
  }
}

// dK and dV of keys [j0, j0 + B) of one head, over every query that sees them.
template <class T, int DMAX>
__global__ void __launch_bounds__(attn::kThreads)
    attention_dkdv_kernel(AttentionBackwardArgs a, const float* delta, int64_t k_tiles) {
  constexpr int B = BackwardTile<DMAX>::B;
  constexpr int SQ = DMAX + 1, SP = B + 1;
  constexpr int kScoreRows = attn::kThreads / B, RS = B / kScoreRows;
  constexpr int RO = B / kDimRows, CO = DMAX / kDimCols;
  static_assert(B % kScoreRows == 0 && B % kDimRows == 0 && DMAX % kDimCols == 0, "tile shapes");

  __shared__ float ks[B * SQ], vs[B * SQ], qs[B * SQ], dos[B * SQ];
  __shared__ float ps[B * SP], dss[B * SP];
  __shared__ float lse2[B], row_delta[B];

  const int64_t bh = blockIdx.x / k_tiles;
  const int64_t j0 = (blockIdx.x % k_tiles) * B;
  const int d = static_cast<int>(a.d), dv = static_cast<int>(a.dv);
  const int64_t nq = a.nq, nk = a.nk;
  const int cols = static_cast<int>(nk - j0 < B ? nk - j0 : B);
  const HeadView<T> h = head_view<T>(a, delta, bh);
  attn::load_tile<B, DMAX, SQ>(ks, h.k + j0 * d, cols, d, 1.0f);
  attn::load_tile<B, DMAX, SQ>(vs, h.v + j0 * dv, cols, dv, 1.0f);

  const int sx = threadIdx.x % B, sy = threadIdx.x / B;
  const int ox = threadIdx.x % kDimCols, oy = threadIdx.x / kDimCols;
  const int d16 = (d + kDimCols - 1) / kDimCols, dv16 = (dv + kDimCols - 1) / kDimCols;
  float acc_k[RO][CO], acc_v[RO][CO];
#pragma unroll
  for (int i = 0; i < RO; ++i)
#pragma unroll
    for (int c = 0; c < CO; ++c) acc_k[i][c] = acc_v[i][c] = 0.0f;

  // Under the causal mask the queries before j0 − (nk − nq) see none of these keys.
  int64_t first_row = a.causal ? j0 - (nk - nq) : 0;
  first_row = first_row < 0 ? 0 : (first_row > nq ? nq : first_row);
  const float q_mul = a.scale * attn::kLog2e;
  for (int64_t i0 = first_row; i0 < nq; i0 += B) {
    const int rows = static_cast<int>(nq - i0 < B ? nq - i0 : B);
    __syncthreads();  // the previous tile's readers are done
    attn::load_tile<B, DMAX, SQ>(qs, h.q + i0 * d, rows, d, q_mul);
    attn::load_tile<B, DMAX, SQ>(dos, h.dout + i0 * dv, rows, dv, 1.0f);
    load_row_terms<B>(lse2, row_delta, h.lse, h.delta, i0, rows);
    __syncthreads();

    float p[RS], ds[RS];
    probabilities<B, DMAX>(a, qs, dos, ks, vs, lse2, row_delta, i0, j0, p, ds);
#pragma unroll
    for (int i = 0; i < RS; ++i) {
      ps[(sy + kScoreRows * i) * SP + sx] = p[i];
      dss[(sy + kScoreRows * i) * SP + sx] = ds[i];
    }
    __syncthreads();

    // dV_j += Σ_i P_ij·dO_i, dK_j += Σ_i dS_ij·q̃_i (key rows oy + 8·i)
    for (int r = 0; r < rows; ++r) {
      float pj[RO], dsj[RO];
#pragma unroll
      for (int i = 0; i < RO; ++i) {
        pj[i] = ps[r * SP + oy + kDimRows * i];
        dsj[i] = dss[r * SP + oy + kDimRows * i];
      }
#pragma unroll
      for (int c = 0; c < CO; ++c) {
        const int col = ox + kDimCols * c;
        if (c < dv16) {
          const float g = dos[r * SQ + col];
#pragma unroll
          for (int i = 0; i < RO; ++i) acc_v[i][c] += pj[i] * g;
        }
        if (c < d16) {
          const float qv = qs[r * SQ + col];
#pragma unroll
          for (int i = 0; i < RO; ++i) acc_k[i][c] += dsj[i] * qv;
        }
      }
    }
  }

  T* dk = static_cast<T*>(a.dk) + (bh * nk + j0) * d;
  T* dvg = static_cast<T*>(a.dv_grad) + (bh * nk + j0) * dv;
#pragma unroll
  for (int i = 0; i < RO; ++i) {
    const int r = oy + kDimRows * i;
    if (r >= cols) continue;
#pragma unroll
    for (int c = 0; c < CO; ++c) {
      const int col = ox + kDimCols * c;
      if (col < d) dk[static_cast<int64_t>(r) * d + col] = store<T>(acc_k[i][c] * attn::kLn2);
      if (col < dv) dvg[static_cast<int64_t>(r) * dv + col] = store<T>(acc_v[i][c]);
    }
  }
}

// dQ of queries [i0, i0 + B) of one head, over every key they see.
template <class T, int DMAX>
__global__ void __launch_bounds__(attn::kThreads)
    attention_dq_kernel(AttentionBackwardArgs a, const float* delta, int64_t q_tiles) {
  constexpr int B = BackwardTile<DMAX>::B;
  constexpr int SQ = DMAX + 1, SP = B + 1;
  constexpr int kScoreRows = attn::kThreads / B, RS = B / kScoreRows;
  constexpr int RO = B / kDimRows, CO = DMAX / kDimCols;

  __shared__ float qs[B * SQ], dos[B * SQ], ks[B * SQ], vs[B * SQ];
  __shared__ float dss[B * SP];
  __shared__ float lse2[B], row_delta[B];

  const int64_t bh = blockIdx.x / q_tiles;
  const int64_t i0 = (blockIdx.x % q_tiles) * B;
  const int d = static_cast<int>(a.d), dv = static_cast<int>(a.dv);
  const int64_t nq = a.nq, nk = a.nk;
  const int rows = static_cast<int>(nq - i0 < B ? nq - i0 : B);
  const HeadView<T> h = head_view<T>(a, delta, bh);
  attn::load_tile<B, DMAX, SQ>(qs, h.q + i0 * d, rows, d, a.scale * attn::kLog2e);
  attn::load_tile<B, DMAX, SQ>(dos, h.dout + i0 * dv, rows, dv, 1.0f);
  load_row_terms<B>(lse2, row_delta, h.lse, h.delta, i0, rows);

  const int sx = threadIdx.x % B, sy = threadIdx.x / B;
  const int ox = threadIdx.x % kDimCols, oy = threadIdx.x / kDimCols;
  const int d16 = (d + kDimCols - 1) / kDimCols;
  float acc[RO][CO];
#pragma unroll
  for (int i = 0; i < RO; ++i)
#pragma unroll
    for (int c = 0; c < CO; ++c) acc[i][c] = 0.0f;

  const int64_t key_end = attn::keys_needed(a.causal, i0, rows, nq, nk);
  for (int64_t j0 = 0; j0 < key_end; j0 += B) {
    const int cols = static_cast<int>(key_end - j0 < B ? key_end - j0 : B);
    __syncthreads();  // the previous tile's readers are done (and the query tiles are loaded)
    attn::load_tile<B, DMAX, SQ>(ks, h.k + j0 * d, cols, d, 1.0f);
    attn::load_tile<B, DMAX, SQ>(vs, h.v + j0 * dv, cols, dv, 1.0f);
    __syncthreads();

    float p[RS], ds[RS];
    probabilities<B, DMAX>(a, qs, dos, ks, vs, lse2, row_delta, i0, j0, p, ds);
#pragma unroll
    for (int i = 0; i < RS; ++i) dss[(sy + kScoreRows * i) * SP + sx] = ds[i];
    __syncthreads();

    // dQ_i += Σ_j dS_ij·K_j (query rows oy + 8·i)
    for (int jj = 0; jj < cols; ++jj) {
      float dsi[RO];
#pragma unroll
      for (int i = 0; i < RO; ++i) dsi[i] = dss[(oy + kDimRows * i) * SP + jj];
#pragma unroll
      for (int c = 0; c < CO; ++c) {
        if (c < d16) {
          const float kv = ks[jj * SQ + ox + kDimCols * c];
#pragma unroll
          for (int i = 0; i < RO; ++i) acc[i][c] += dsi[i] * kv;
        }
      }
    }
  }

  T* dq = static_cast<T*>(a.dq) + (bh * nq + i0) * d;
#pragma unroll
  for (int i = 0; i < RO; ++i) {
    const int r = oy + kDimRows * i;
    if (r >= rows) continue;
#pragma unroll
    for (int c = 0; c < CO; ++c) {
      const int col = ox + kDimCols * c;
      if (col < d) dq[static_cast<int64_t>(r) * d + col] = store<T>(acc[i][c] * a.scale);
    }
  }
}

unsigned checked_blocks(int64_t blocks) {
  if (blocks > INT32_MAX) fail(ErrorCode::Unsupported, "attention_backward on cuda: too many tiles");
  return static_cast<unsigned>(blocks);
}

template <class T, int DMAX>
void launch_backward(const AttentionBackwardArgs& a, const float* delta, cudaStream_t stream) {
  constexpr int B = BackwardTile<DMAX>::B;
  const int64_t heads = a.batch * a.heads;
  const int64_t q_tiles = (a.nq + B - 1) / B, k_tiles = (a.nk + B - 1) / B;
  if (heads * k_tiles > 0) {
    attention_dkdv_kernel<T, DMAX><<<checked_blocks(heads * k_tiles), attn::kThreads, 0, stream>>>(a, delta, k_tiles);
    check_launch("attention_backward (dk, dv)");
  }
  if (heads * q_tiles > 0) {
    attention_dq_kernel<T, DMAX><<<checked_blocks(heads * q_tiles), attn::kThreads, 0, stream>>>(a, delta, q_tiles);
    check_launch("attention_backward (dq)");
  }
}

void attention_backward_cuda(const AttentionBackwardArgs& a) {
  const int64_t rows = a.batch * a.heads * a.nq;
  if (a.batch * a.heads <= 0) return;
  const int bucket = attn::head_dim_bucket("attention_backward", a.d, a.dv);
  Scratch scratch(static_cast<size_t>(rows > 0 ? rows : 0) * sizeof(float), "attention_backward (row deltas)");
  float* delta = scratch.as<float>();
  const cudaStream_t stream = current_stream();
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, "attention_backward", T, {
    if (rows > 0) {
      constexpr int kWarps = kThreads / 32;
      const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((rows + kWarps - 1) / kWarps, int64_t{1} << 20));
      attention_delta_kernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(a.dout),
                                                                static_cast<const T*>(a.o), delta, rows, a.dv);
      check_launch("attention_backward (row deltas)");
    }
    if (bucket == attn::kSmallDim) launch_backward<T, attn::kSmallDim>(a, delta, stream);
    else launch_backward<T, attn::kLargeDim>(a, delta, stream);
  });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(attention_backward, CUDA, AttentionBackwardArgs, attention_backward_cuda);

}  // namespace cuda
}  // namespace imprint
