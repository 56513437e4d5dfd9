// Fused scaled-dot-product attention, forward, on the GPU: the semantics of
// csrc/cpu/attn.cc (o = softmax(q·kᵀ·scale + causal mask)·v, lse in f32, a
// row with no visible key gives o = 0 and lse = −inf), flash-attention style.
// Each block owns BQ query rows of one (batch, head), keeps them in shared
// memory and streams BK-key tiles of K and V through it with an online
// softmax in f32 (running max, running sum). Storage may be f32, f16 or bf16;
// all arithmetic is f32.
//
// This is the SIMT path, used for every dtype and architecture. What would
// make it faster: mma.sync (f16/bf16, sm_80+) for q·kᵀ and p·v with K/V tiles
// double-buffered through cp.async; larger tiles with the scores kept in
// registers instead of shared memory; skipping the rescale when the max
// does not move.
#include "attention_tile.cuh"
#include "core/args/attn.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "float_dispatch.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

using attn::kDimCols;
using attn::kDimRows;

// Tiles per bucket: 42.5 KB (DMAX 64) and 43.6 KB (DMAX 160) of shared memory,
// under the 48 KB every architecture gives without opting in.
template <int DMAX> struct ForwardTiles;
template <> struct ForwardTiles<attn::kSmallDim> {
  static constexpr int BQ = 64, BK = 32;
};
template <> struct ForwardTiles<attn::kLargeDim> {
  static constexpr int BQ = 32, BK = 16;
};

template <class T, int DMAX>
__global__ void __launch_bounds__(attn::kThreads) attention_forward_kernel(AttentionForwardArgs a, int64_t q_tiles) {
  constexpr int BQ = ForwardTiles<DMAX>::BQ, BK = ForwardTiles<DMAX>::BK;
  constexpr int SQ = DMAX + 1, SP = BK + 1;
  // Scores: BK columns × (kThreads / BK) rows of threads, RS rows each.
  constexpr int kScoreRows = attn::kThreads / BK, RS = BQ / kScoreRows;
  // Output: kDimCols × kDimRows threads, RO rows × CO columns each.
  constexpr int RO = BQ / kDimRows, CO = DMAX / kDimCols;
  // Softmax: TPR adjacent lanes per row.
  constexpr int TPR = attn::kThreads / BQ;
  static_assert(BQ % kScoreRows == 0 && BQ % kDimRows == 0 && DMAX % kDimCols == 0, "tile shapes");
  static_assert(TPR >= 1 && TPR <= 32 && (TPR & (TPR - 1)) == 0, "softmax lanes per row");

  __shared__ float qs[BQ * SQ];
  __shared__ float ks[BK * SQ];
  __shared__ float vs[BK * SQ];
  __shared__ float ps[BQ * SP];
  __shared__ float row_max[BQ], row_sum[BQ], row_alpha[BQ];

  const int t = threadIdx.x;
  const int64_t bh = blockIdx.x / q_tiles;
  const int64_t i0 = (blockIdx.x % q_tiles) * BQ;
  const int d = static_cast<int>(a.d), dv = static_cast<int>(a.dv);
  const int64_t nq = a.nq, nk = a.nk;
  const int rows = static_cast<int>(nq - i0 < BQ ? nq - i0 : BQ);
  const T* q = static_cast<const T*>(a.q) + (bh * nq + i0) * d;
  const T* k = static_cast<const T*>(a.k) + bh * nk * d;
  const T* v = static_cast<const T*>(a.v) + bh * nk * dv;

  // q·scale·log2(e) rounded to f32 once, as the CPU does: scores come out base 2.
  attn::load_tile<BQ, DMAX, SQ>(qs, q, rows, d, a.scale * attn::kLog2e);
  for (int r = t; r < BQ; r += attn::kThreads) {
    row_max[r] = -INFINITY;
    row_sum[r] = 0.0f;
  }

  const int sx = t % BK, sy = t / BK;                  // score thread grid
  const int ox = t % kDimCols, oy = t / kDimCols;      // output thread grid
  const int dv16 = (dv + kDimCols - 1) / kDimCols;     // output column groups in use
  float acc[RO][CO];
#pragma unroll
  for (int i = 0; i < RO; ++i)
#pragma unroll
    for (int c = 0; c < CO; ++c) acc[i][c] = 0.0f;

  const int64_t key_end = attn::keys_needed(a.causal, i0, rows, nq, nk);
  for (int64_t j0 = 0; j0 < key_end; j0 += BK) {
    const int cols = static_cast<int>(key_end - j0 < BK ? key_end - j0 : BK);
    __syncthreads();  // the previous tile's readers are done
    attn::load_tile<BK, DMAX, SQ>(ks, k + j0 * d, cols, d, 1.0f);
    attn::load_tile<BK, DMAX, SQ>(vs, v + j0 * dv, cols, dv, 1.0f);
    __syncthreads();

    // Scores s = q·kᵀ (base 2), −inf where masked.
    {
      float s[RS];
#pragma unroll
      for (int i = 0; i < RS; ++i) s[i] = 0.0f;
      for (int kk = 0; kk < d; ++kk) {
        const float kv = ks[sx * SQ + kk];
#pragma unroll
        for (int i = 0; i < RS; ++i) s[i] += qs[(sy + kScoreRows * i) * SQ + kk] * kv;
      }
#pragma unroll
      for (int i = 0; i < RS; ++i) {
        const int r = sy + kScoreRows * i;
        const bool seen = sx < cols && attn::visible(a.causal, i0 + r, j0 + sx, nq, nk);
        ps[r * SP + sx] = seen ? s[i] : -INFINITY;
      }
    }
    __syncthreads();

    // Online softmax: the row's new max, p = 2^(s − max), the running sum
    // rescaled by alpha = 2^(old max − new max). A row with nothing visible so
    // far keeps max −inf, p = 0 and alpha = 1.
    {
      const int r = t / TPR, sub = t % TPR;
      float m = -INFINITY;
      for (int c = sub; c < BK; c += TPR) m = fmaxf(m, ps[r * SP + c]);
#pragma unroll
      for (int off = TPR / 2; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
      const float m_old = row_max[r];
      const float m_new = fmaxf(m_old, m);
      float sum = 0.0f;
      for (int c = sub; c < BK; c += TPR) {
        const float p = m_new == -INFINITY ? 0.0f : exp2f(ps[r * SP + c] - m_new);
        ps[r * SP + c] = p;
        sum += p;
      }
      // Every lane of the row has read row_max[r] before this shuffle, so the write below is safe.
#pragma unroll
      for (int off = TPR / 2; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
      if (sub == 0) {
        const float alpha = m_new == -INFINITY ? 1.0f : exp2f(m_old - m_new);
        row_sum[r] = row_sum[r] * alpha + sum;
        row_max[r] = m_new;
        row_alpha[r] = alpha;
      }
    }
    __syncthreads();

    // acc = acc·alpha + p·v
#pragma unroll
    for (int i = 0; i < RO; ++i) {
      const float alpha = row_alpha[oy + kDimRows * i];
#pragma unroll
      for (int c = 0; c < CO; ++c) acc[i][c] *= alpha;
    }
    for (int jj = 0; jj < cols; ++jj) {
      float p[RO];
#pragma unroll
      for (int i = 0; i < RO; ++i) p[i] = ps[(oy + kDimRows * i) * SP + jj];
#pragma unroll
      for (int c = 0; c < CO; ++c) {
        if (c < dv16) {
          const float vv = vs[jj * SQ + ox + kDimCols * c];
#pragma unroll
          for (int i = 0; i < RO; ++i) acc[i][c] += p[i] * vv;
        }
      }
    }
  }
  __syncthreads();  // row_sum and row_max are final

  T* o = static_cast<T*>(a.o) + (bh * nq + i0) * dv;
#pragma unroll
  for (int i = 0; i < RO; ++i) {
    const int r = oy + kDimRows * i;
    if (r >= rows) continue;
    const float l = row_sum[r];
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;  // no visible key: o = 0
#pragma unroll
    for (int c = 0; c < CO; ++c) {
      const int col = ox + kDimCols * c;
      if (col < dv) o[static_cast<int64_t>(r) * dv + col] = store<T>(acc[i][c] * inv);
    }
  }
  float* lse = a.lse + bh * nq + i0;
  for (int r = t; r < rows; r += attn::kThreads) {
    const float l = row_sum[r];
    lse[r] = l > 0.0f ? static_cast<float>((static_cast<double>(row_max[r]) + log2(static_cast<double>(l))) *
                                           static_cast<double>(attn::kLn2))
                      : -INFINITY;
  }
}

template <class T, int DMAX>
void launch_forward(const AttentionForwardArgs& a, cudaStream_t stream) {
  constexpr int BQ = ForwardTiles<DMAX>::BQ;
  const int64_t q_tiles = (a.nq + BQ - 1) / BQ;
  const int64_t blocks = a.batch * a.heads * q_tiles;
  if (blocks > INT32_MAX) fail(ErrorCode::Unsupported, "attention_forward on cuda: too many query tiles");
  attention_forward_kernel<T, DMAX><<<static_cast<unsigned>(blocks), attn::kThreads, 0, stream>>>(a, q_tiles);
}

void attention_forward_cuda(const AttentionForwardArgs& a) {
  if (a.batch * a.heads * a.nq <= 0) return;
  const int bucket = attn::head_dim_bucket("attention_forward", a.d, a.dv);
  const cudaStream_t stream = current_stream();
  if (attn::launch_forward_mma(a, stream)) {
    check_launch("attention_forward (tensor cores)");
    return;
  }
  IMPRINT_CUDA_FLOAT_DISPATCH(a.dtype, "attention_forward", T, {
    if (bucket == attn::kSmallDim) launch_forward<T, attn::kSmallDim>(a, stream);
    else launch_forward<T, attn::kLargeDim>(a, stream);
  });
  check_launch("attention_forward");
}

}  // namespace

IMPRINT_REGISTER_KERNEL(attention_forward, CUDA, AttentionForwardArgs, attention_forward_cuda);

}  // namespace cuda
}  // namespace imprint
