// Fused attention forward on tensor cores, for f16/bf16 with head dims up to
// 64 (SD's 40 at 4096 tokens, CLIP's 64) on sm_80 and newer: the same
// semantics and online softmax as attention_forward.cu, with q·kᵀ and p·v as
// WMMA 16×16×16 products (16-bit inputs, f32 accumulation).
//
// Each of the 4 warps owns 16 of the block's 64 query rows end to end (scores,
// softmax, output), so only the K/V tile loads need block barriers. Scores
// come from the stored q and k (exact products) and are scaled by
// scale·log2(e) in f32 afterwards; p is rounded to the storage dtype for the
// p·v product only (the running sum, hence lse, adds the unrounded values, as
// FlashAttention-2 does). The running output lives in shared memory in
// f32, where each tile rescales its rows by 2^(old max − new max) before the
// product adds into it (WMMA fragments do not say which row an element is).
//
// What would make it faster: mma.sync with the output kept in registers
// (fragment rows are known there, so no shared round trip), 64-key tiles
// double-buffered with cp.async, and head dims 80/160 (more shared memory
// than the 48 KB used here, with the opt-in).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <atomic>

#include "attention_tile.cuh"
#include "core/args/attn.h"
#include "cuda_check.cuh"
#include "element.cuh"

namespace imprint {
namespace cuda {
namespace attn {

// Tile shapes (a named struct: architectures without the kernel body use none of them).
struct MmaTiles {
  static constexpr int kBQ = 64, kBK = 16, kMaxDim = 64;
  // Leading dims (elements): 16-bit tiles a multiple of 8, f32 tiles of 4, so
  // every fragment pointer stays 32-byte aligned; the padding spreads banks.
  static constexpr int kLdQ = kMaxDim + 8, kLdS = kBK + 4, kLdP = kBK + 8, kLdO = kMaxDim + 4;
};
}  // namespace attn

namespace {

using Mma = attn::MmaTiles;

static_assert(Mma::kBQ == 16 * (attn::kThreads / 32), "one 16-row slab per warp");

template <class T> struct WmmaType;
template <> struct WmmaType<f16> { using type = __half; };
template <> struct WmmaType<bf16> { using type = __nv_bfloat16; };

// Rows [0, valid_rows) × cols [0, dim) of a row-major [*, dim] matrix as raw
// 16-bit values into tile[ROWS][Mma::kLdQ]; zeros elsewhere up to Mma::kMaxDim columns.
template <int ROWS, class T>
__device__ __forceinline__ void load_bits(uint16_t* tile, const T* src, int valid_rows, int dim) {
  for (int e = threadIdx.x; e < ROWS * Mma::kMaxDim; e += blockDim.x) {
    const int r = e / Mma::kMaxDim, c = e - r * Mma::kMaxDim;
    tile[r * Mma::kLdQ + c] = (r < valid_rows && c < dim) ? src[static_cast<int64_t>(r) * dim + c].bits : uint16_t{0};
  }
}

template <class T>
__global__ void __launch_bounds__(attn::kThreads) attention_forward_mma_kernel(AttentionForwardArgs a,
                                                                              int64_t q_tiles) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  using W = typename WmmaType<T>::type;
  __shared__ __align__(32) uint16_t qh[Mma::kBQ * Mma::kLdQ];
  __shared__ __align__(32) uint16_t kh[Mma::kBK * Mma::kLdQ];
  __shared__ __align__(32) uint16_t vh[Mma::kBK * Mma::kLdQ];
  __shared__ __align__(32) float sf[Mma::kBQ * Mma::kLdS];
  __shared__ __align__(32) uint16_t ph[Mma::kBQ * Mma::kLdP];
  __shared__ __align__(32) float oacc[Mma::kBQ * Mma::kLdO];
  __shared__ float row_max[Mma::kBQ], row_sum[Mma::kBQ];

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t bh = blockIdx.x / q_tiles;
  const int64_t i0 = (blockIdx.x % q_tiles) * Mma::kBQ;
  const int d = static_cast<int>(a.d), dv = static_cast<int>(a.dv);
  const int dp = (d + 15) / 16 * 16, dvp = (dv + 15) / 16 * 16;  // k-steps and output column blocks
  const int64_t nq = a.nq, nk = a.nk;
  const int rows = static_cast<int>(nq - i0 < Mma::kBQ ? nq - i0 : Mma::kBQ);
  const T* q = static_cast<const T*>(a.q) + (bh * nq + i0) * d;
  const T* k = static_cast<const T*>(a.k) + bh * nk * d;
  const T* v = static_cast<const T*>(a.v) + bh * nk * dv;
  const float mul = a.scale * attn::kLog2e;

  load_bits<Mma::kBQ>(qh, q, rows, d);
  // This lane's row of the warp's slab and its half of the columns.
  const int r = 16 * warp + (lane >> 1), half = lane & 1;
  for (int c = half * (Mma::kMaxDim / 2); c < (half + 1) * (Mma::kMaxDim / 2); ++c) oacc[r * Mma::kLdO + c] = 0.0f;
  if (half == 0) {
    row_max[r] = -INFINITY;
    row_sum[r] = 0.0f;
  }
  __syncwarp();  // the row's two lanes read each other's entries

  const W* q_slab = reinterpret_cast<const W*>(qh) + 16 * warp * Mma::kLdQ;
  float* s_slab = sf + 16 * warp * Mma::kLdS;
  const W* p_slab = reinterpret_cast<const W*>(ph) + 16 * warp * Mma::kLdP;
  float* o_slab = oacc + 16 * warp * Mma::kLdO;
  const int64_t key_end = attn::keys_needed(a.causal, i0, rows, nq, nk);
  for (int64_t j0 = 0; j0 < key_end; j0 += Mma::kBK) {
    const int cols = static_cast<int>(key_end - j0 < Mma::kBK ? key_end - j0 : Mma::kBK);
    __syncthreads();  // every warp is done with the previous K/V tile (and the q tile is loaded)
    load_bits<Mma::kBK>(kh, k + j0 * d, cols, d);
    load_bits<Mma::kBK>(vh, v + j0 * dv, cols, dv);
    __syncthreads();

    // Raw scores q·kᵀ of the warp's 16 rows × 16 keys.
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> s_frag;
    wmma::fill_fragment(s_frag, 0.0f);
    for (int k0 = 0; k0 < dp; k0 += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, W, wmma::row_major> q_frag;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, W, wmma::col_major> k_frag;  // kᵀ: column n is key n
      wmma::load_matrix_sync(q_frag, q_slab + k0, Mma::kLdQ);
      wmma::load_matrix_sync(k_frag, reinterpret_cast<const W*>(kh) + k0, Mma::kLdQ);
      wmma::mma_sync(s_frag, q_frag, k_frag, s_frag);
    }
    wmma::store_matrix_sync(s_slab, s_frag, Mma::kLdS, wmma::mem_row_major);
    __syncwarp();

    // Online softmax, two lanes per row, 8 keys each (base 2, as the SIMT kernel).
    {
      float s[8];
      float m = -INFINITY;
#pragma unroll
      for (int c = 0; c < 8; ++c) {
        const int col = half * 8 + c;
        const bool seen = col < cols && attn::visible(a.causal, i0 + r, j0 + col, nq, nk);
        s[c] = seen ? sf[r * Mma::kLdS + col] * mul : -INFINITY;
        m = fmaxf(m, s[c]);
      }
      m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
      const float m_old = row_max[r];
      const float m_new = fmaxf(m_old, m);
      float sum = 0.0f;
#pragma unroll
      for (int c = 0; c < 8; ++c) {
        const float p = m_new == -INFINITY ? 0.0f : exp2f(s[c] - m_new);
        ph[r * Mma::kLdP + half * 8 + c] = store<T>(p).bits;
        sum += p;  // unrounded, so lse matches the f32 kernels'
      }
      // Both lanes of the row have read row_max[r] before this shuffle.
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      const float alpha = m_new == -INFINITY ? 1.0f : exp2f(m_old - m_new);
      if (half == 0) {
        row_sum[r] = row_sum[r] * alpha + sum;
        row_max[r] = m_new;
      }
      for (int c = half * (Mma::kMaxDim / 2); c < (half + 1) * (Mma::kMaxDim / 2); ++c) o_slab[(lane >> 1) * Mma::kLdO + c] *= alpha;
    }
    __syncwarp();

    // o += p·v, one 16-column block of the output at a time.
    wmma::fragment<wmma::matrix_a, 16, 16, 16, W, wmma::row_major> p_frag;
    wmma::load_matrix_sync(p_frag, p_slab, Mma::kLdP);
    for (int c0 = 0; c0 < dvp; c0 += 16) {
      wmma::fragment<wmma::matrix_b, 16, 16, 16, W, wmma::row_major> v_frag;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> o_frag;
      wmma::load_matrix_sync(v_frag, reinterpret_cast<const W*>(vh) + c0, Mma::kLdQ);
      wmma::load_matrix_sync(o_frag, o_slab + c0, Mma::kLdO, wmma::mem_row_major);
      wmma::mma_sync(o_frag, p_frag, v_frag, o_frag);
      wmma::store_matrix_sync(o_slab + c0, o_frag, Mma::kLdO, wmma::mem_row_major);
    }
    __syncwarp();
  }

  if (r < rows) {
    const float l = row_sum[r];
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;  // no visible key: o = 0
    T* o = static_cast<T*>(a.o) + (bh * nq + i0 + r) * dv;
    for (int c = half; c < dv; c += 2) o[c] = store<T>(oacc[r * Mma::kLdO + c] * inv);
    if (half == 0) {
      a.lse[bh * nq + i0 + r] =
          l > 0.0f ? static_cast<float>((static_cast<double>(row_max[r]) + log2(static_cast<double>(l))) *
                                        static_cast<double>(attn::kLn2))
                   : -INFINITY;
    }
  }
#endif
}

// Compute capability of the current device, looked up once per device (ops
// may run on several threads; a repeated lookup stores the same value).
int current_major() {
  static std::atomic<int> majors[64] = {};
  int device = 0;
  check(cudaGetDevice(&device), "attention_forward: cudaGetDevice");
  if (device < 0 || device >= 64) return 0;
  int major = majors[device].load(std::memory_order_relaxed);
  if (major == 0) {
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
          "attention_forward: cudaDeviceGetAttribute");
    majors[device].store(major, std::memory_order_relaxed);
  }
  return major;
}

}  // namespace

namespace attn {

bool launch_forward_mma(const AttentionForwardArgs& a, cudaStream_t stream) {
  if (a.dtype != DType::F16 && a.dtype != DType::BF16) return false;
  if (a.d > Mma::kMaxDim || a.dv > Mma::kMaxDim || current_major() < 8) return false;
  const int64_t q_tiles = (a.nq + Mma::kBQ - 1) / Mma::kBQ;
  const int64_t blocks = a.batch * a.heads * q_tiles;
  if (blocks <= 0 || blocks > INT32_MAX) return false;
  if (a.dtype == DType::F16) {
    attention_forward_mma_kernel<f16><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(a, q_tiles);
  } else {
    attention_forward_mma_kernel<bf16><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(a, q_tiles);
  }
  return true;
}

}  // namespace attn
}  // namespace cuda
}  // namespace imprint
