// Shared pieces of the fused attention kernels (attention_forward.cu,
// attention_backward.cu): tile shapes per head-dim bucket, the tile loader,
// and the base-2 conventions of csrc/cpu/attn.cc (scores are computed from
// q·scale·log2(e), so softmax exponentials are exp2 and lse converts by ln 2).
//
// Tiles live in shared memory as f32 rows padded to an odd stride (DMAX + 1),
// so a warp walking one column of a tile hits 32 different banks. Blocks have
// kAttnThreads threads; every tile size below is a multiple of what the
// thread grids in the kernels assume (16 columns × 8 rows for head-dim
// products, and rows × tile-columns for score products).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/args/attn.h"
#include "core/error.h"
#include "element.cuh"

namespace imprint {
namespace cuda {
namespace attn {

constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
// Columns of the head-dim thread grid (the other 8 = kThreads / 16 go over rows).
constexpr int kDimCols = 16;
constexpr int kDimRows = kThreads / kDimCols;

// Head-dim buckets: max(d, dv) ≤ 64 (CLIP, SD 40/64) and ≤ 160 (SD 80/160).
// Register accumulators and shared tiles are sized by the bucket; loops run
// over the real d and dv.
constexpr int kSmallDim = 64, kLargeDim = 160;

inline int head_dim_bucket(const char* op, int64_t d, int64_t dv) {
  const int64_t m = d > dv ? d : dv;
  if (m <= kSmallDim) return kSmallDim;
  if (m <= kLargeDim) return kLargeDim;
  fail(ErrorCode::Unsupported, std::string(op) + " on cuda supports head dims up to " + std::to_string(kLargeDim) +
                                   ", got d " + std::to_string(d) + " and dv " + std::to_string(dv));
}

// Copies rows [0, valid_rows) × cols [0, dim) of a row-major [*, dim] matrix
// into tile[ROWS][STRIDE] as f32 times `mul`, with zeros everywhere else up to
// DMAX columns (padding rows and columns then add nothing to any product).
template <int ROWS, int DMAX, int STRIDE, class T>
__device__ __forceinline__ void load_tile(float* tile, const T* src, int valid_rows, int dim, float mul) {
  for (int e = threadIdx.x; e < ROWS * DMAX; e += blockDim.x) {
    const int r = e / DMAX, c = e - r * DMAX;
    float v = 0.0f;
    if (r < valid_rows && c < dim) v = load(src[static_cast<int64_t>(r) * dim + c]) * mul;
    tile[r * STRIDE + c] = v;
  }
}

// Keys [0, key_end) a block of query rows [i0, i0 + rows) needs: all of them,
// or under the causal mask (query i sees keys j ≤ i + nk − nq) up to the last row's.
__device__ __forceinline__ int64_t keys_needed(bool causal, int64_t i0, int64_t rows, int64_t nq, int64_t nk) {
  if (!causal) return nk;
  const int64_t end = i0 + rows + (nk - nq);
  return end < 0 ? 0 : (end > nk ? nk : end);
}

__device__ __forceinline__ bool visible(bool causal, int64_t i, int64_t j, int64_t nq, int64_t nk) {
  return i < nq && j < nk && (!causal || j <= i + (nk - nq));
}

// Runs the tensor-core forward (attention_forward_mma.cu) when it applies to
// these args and this device (f16/bf16, head dims ≤ 64, sm_80+); false otherwise.
bool launch_forward_mma(const AttentionForwardArgs& a, cudaStream_t stream);

}  // namespace attn
}  // namespace cuda
}  // namespace imprint
