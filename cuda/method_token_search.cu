// The tuning encoder's vocabulary kernels on the GPU, the twins of
// csrc/cpu/method_token_search.cc:
//  - row norms: one warp per row;
//  - token_topk_cosine: every cosine [B, V] by a shared-memory tiled product
//    (64 queries × 64 vocabulary rows per block), then top-k passes: each
//    block sorts a chunk of 1024 candidates of one query (bitonic, in shared
//    memory) and keeps its best k; passes repeat over the kept candidates
//    until one chunk remains, which gives the answer;
//  - the contrastive nearest-neighbour loss: logits one warp each, the
//    per-row log-sum-exps one thread per row in the CPU's order, and the
//    gradient one block per query.
// Inputs f32/f16/bf16, arithmetic f32; scratch comes from the device's
// allocator and is given back at the end (stream order keeps reuse safe).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/args/method.h"
#include "core/backend.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

// ---- scratch -----------------------------------------------------------------

// One device allocation carved into 256-byte aligned pieces, freed on scope exit.
class Scratch {
 public:
  Scratch(const char* op, size_t bytes) : bytes_(bytes) {
    int device = 0;
    IMPRINT_CUDA_CHECK(cudaGetDevice(&device));
    backend_ = &cuda_backend(device);
    if (bytes_ == 0) return;
    base_ = static_cast<char*>(backend_->raw_allocate(bytes_));
    if (!base_) {
      fail(ErrorCode::OutOfMemory, std::string(op) + ": no room on cuda:" + std::to_string(device) + " for " +
                                       std::to_string(bytes_) + " bytes of scratch");
    }
  }
  ~Scratch() {
    if (base_) backend_->raw_free(base_, bytes_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  static size_t round_up(size_t bytes) { return (bytes + 255) / 256 * 256; }
  // The next piece of `count` elements of T (the constructor's size must cover all pieces).
  template <class T>
  T* take(int64_t count) {
    T* piece = reinterpret_cast<T*>(base_ + used_);
    used_ += round_up(static_cast<size_t>(count) * sizeof(T));
    if (used_ > bytes_) fail(ErrorCode::Internal, "method kernel scratch overrun");
    return piece;
  }

 private:
  Backend* backend_ = nullptr;
  char* base_ = nullptr;
  size_t bytes_ = 0;
  size_t used_ = 0;
};

// ---- reductions ----------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
  for (int delta = 16; delta > 0; delta >>= 1) v += __shfl_down_sync(0xffffffffu, v, delta);
  return v;
}

// Sum over a block of kBlockThreads threads; every thread gets the total.
constexpr int kBlockThreads = 256;
__device__ float block_sum(float v) {
  __shared__ float partial[kBlockThreads / 32];
  __shared__ float total;
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0;
    for (int w = 0; w < kBlockThreads / 32; ++w) s += partial[w];
    total = s;
  }
  __syncthreads();
  return total;
}

// 1/‖x‖, or 0 for a zero row, as the CPU's inverse_norm.
__device__ __forceinline__ float inverse_norm(float norm) { return norm == 0 ? 0.0f : __fdiv_rn(1.0f, norm); }

// ---- row norms -------------------------------------------------------------------

// norms[r] = ‖x[r, :]‖, one warp per row.
template <class T>
__global__ void row_norms_kernel(const T* __restrict__ x, float* __restrict__ norms, int64_t rows, int64_t dim) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_per_grid = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5); r < rows;
       r += warps_per_grid) {
    const T* row = x + r * dim;
    float acc = 0;
    for (int64_t d = lane; d < dim; d += 32) {
      const float v = load(row[d]);
      acc += v * v;
    }
    acc = warp_sum(acc);
    if (lane == 0) norms[r] = sqrtf(acc);
  }
}

template <class T>
void launch_row_norms(const void* x, float* norms, int64_t rows, int64_t dim, cudaStream_t stream) {
  // One warp per row: as many threads as rows × 32 (the kernel strides past the grid's cap).
  row_norms_kernel<T><<<grid_size(rows * 32), kThreads, 0, stream>>>(static_cast<const T*>(x), norms, rows, dim);
}

void launch_row_norms(DType dtype, const void* x, float* norms, int64_t rows, int64_t dim, cudaStream_t stream) {
  switch (dtype) {
    case DType::F32: launch_row_norms<float>(x, norms, rows, dim, stream); break;
    case DType::F16: launch_row_norms<f16>(x, norms, rows, dim, stream); break;
    case DType::BF16: launch_row_norms<bf16>(x, norms, rows, dim, stream); break;
    default: fail(ErrorCode::DtypeMismatch, "method kernels: rows must be f32, f16 or bf16");
  }
  check_launch("row norms");
}

void token_vocab_norms_cuda(const RowNormsArgs& a) {
  if (a.rows == 0) return;
  launch_row_norms(a.dtype, a.x, a.norms, a.rows, a.dim, current_stream());
}

// ---- cosine similarities -----------------------------------------------------------

constexpr int kTileQ = 64;   // queries per block
constexpr int kTileV = 64;   // vocabulary rows per block
constexpr int kTileD = 16;   // width of one shared-memory step
constexpr int kSimThreads = 256;  // 16 × 16 threads, 4 × 4 outputs each

// sims[b, v] = (q_b · x_v) / (‖q_b‖·‖x_v‖), 0 when a norm is 0 (NaN stays NaN).
// Shared tiles are stored d-major ([kTileD][tile + 1]) so the inner loop reads
// consecutive rows; the +1 spreads the transposing stores over the banks.
template <class T>
__global__ void __launch_bounds__(kSimThreads) cosine_sims_kernel(const T* __restrict__ queries, const T* __restrict__ vocab,
                                                                  const float* __restrict__ query_norms,
                                                                  const float* __restrict__ vocab_norms,
                                                                  float* __restrict__ sims, int64_t B, int64_t V, int64_t D) {
  __shared__ float q_tile[kTileD][kTileQ + 1];
  __shared__ float v_tile[kTileD][kTileV + 1];
  const int tid = threadIdx.x;
  const int ty = tid / 16, tx = tid % 16;
  const int64_t q0 = static_cast<int64_t>(blockIdx.y) * kTileQ;
  const int64_t v0 = static_cast<int64_t>(blockIdx.x) * kTileV;
  float acc[4][4] = {};
  for (int64_t d0 = 0; d0 < D; d0 += kTileD) {
    // 64 rows × 16 columns per tile: four elements per thread, zero outside the matrices.
    for (int e = tid; e < kTileQ * kTileD; e += kSimThreads) {
      const int row = e / kTileD, col = e % kTileD;
      const int64_t q = q0 + row, v = v0 + row, d = d0 + col;
      q_tile[col][row] = (q < B && d < D) ? static_cast<float>(load(queries[q * D + d])) : 0.0f;
      v_tile[col][row] = (v < V && d < D) ? static_cast<float>(load(vocab[v * D + d])) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileD; ++kk) {
      float qv[4], vv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) qv[i] = q_tile[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) vv[j] = v_tile[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += qv[i] * vv[j];
      }
    }
    __syncthreads();  // before the next step overwrites the tiles
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t q = q0 + ty + 16 * i;
    if (q >= B) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t v = v0 + tx + 16 * j;
      if (v >= V) continue;
      const float denom = __fmul_rn(query_norms[q], vocab_norms[v]);
      sims[q * V + v] = denom == 0 ? 0.0f : __fdiv_rn(acc[i][j], denom);
    }
  }
}

// ---- top-k passes ----------------------------------------------------------------

constexpr int kChunk = 1024;             // candidates one block sorts
constexpr int kSortThreads = kChunk / 2; // one compare-exchange each per step

// Higher similarity first, equal similarities by lower index, NaN as -inf (the CPU's ranks_before).
__device__ __forceinline__ bool ranks_before(float sim_a, int32_t index_a, float sim_b, int32_t index_b) {
  const float a = isnan(sim_a) ? -INFINITY : sim_a, b = isnan(sim_b) ? -INFINITY : sim_b;
  return a > b || (a == b && index_a < index_b);
}

// Block (chunk c, query b) sorts in_vals[b, c·1024 ...] (with their indices:
// in_idx, or the position itself when in_idx is null) and writes its best k
// to out[b, c·k ... c·k + k) of rows out_stride long. Missing candidates
// (past n_in) are -inf with index INT32_MAX: they rank after every real one.
__global__ void __launch_bounds__(kSortThreads) topk_chunk_kernel(const float* __restrict__ in_vals,
                                                                 const int32_t* __restrict__ in_idx, int64_t n_in,
                                                                 float* __restrict__ out_vals,
                                                                 int32_t* __restrict__ out_idx, int64_t out_stride,
                                                                 int k) {
  __shared__ float vals[kChunk];
  __shared__ int32_t idx[kChunk];
  const int64_t b = blockIdx.y;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kChunk;
  for (int t = threadIdx.x; t < kChunk; t += kSortThreads) {
    const int64_t p = base + t;
    if (p < n_in) {
      vals[t] = in_vals[b * n_in + p];
      idx[t] = in_idx ? in_idx[b * n_in + p] : static_cast<int32_t>(p);
    } else {
      vals[t] = -INFINITY;
      idx[t] = INT32_MAX;
    }
  }
  // Bitonic sort into ranks_before order: runs of `size` alternate direction
  // until the last merge (size = kChunk) orders the whole chunk.
  for (int size = 2; size <= kChunk; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      __syncthreads();
      const int pair = threadIdx.x;
      const int i = (pair / stride) * (2 * stride) + (pair % stride);
      const int j = i + stride;
      const bool forward = (i & size) == 0;
      const float vi = vals[i], vj = vals[j];
      const int32_t ii = idx[i], ij = idx[j];
      const bool swap = forward ? ranks_before(vj, ij, vi, ii) : ranks_before(vi, ii, vj, ij);
      if (swap) {
        vals[i] = vj;
        vals[j] = vi;
        idx[i] = ij;
        idx[j] = ii;
      }
    }
  }
  __syncthreads();
  for (int t = threadIdx.x; t < k; t += kSortThreads) {
    out_vals[b * out_stride + static_cast<int64_t>(blockIdx.x) * k + t] = vals[t];
    out_idx[b * out_stride + static_cast<int64_t>(blockIdx.x) * k + t] = idx[t];
  }
}

int64_t chunks_of(int64_t n) { return (n + kChunk - 1) / kChunk; }

template <class T>
void launch_cosine_sims(const TokenTopkArgs& a, const float* query_norms, const float* vocab_norms, float* sims,
                        cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((a.vocab_size + kTileV - 1) / kTileV),
                  static_cast<unsigned>((a.batch + kTileQ - 1) / kTileQ));
  cosine_sims_kernel<T><<<grid, kSimThreads, 0, stream>>>(static_cast<const T*>(a.queries),
                                                          static_cast<const T*>(a.vocab), query_norms, vocab_norms,
                                                          sims, a.batch, a.vocab_size, a.dim);
}

void token_topk_cosine_cuda(const TokenTopkArgs& a) {
  const char* op = "token_topk_cosine";
  const int64_t B = a.batch, V = a.vocab_size, K = a.k;
  cudaStream_t stream = current_stream();
  // Scratch: query norms, vocab norms (unless given), all similarities, and
  // two candidate lists (the first pass's output is the longest).
  const int64_t first_candidates = chunks_of(V) > 1 ? B * chunks_of(V) * K : 0;
  const size_t bytes = Scratch::round_up(B * sizeof(float)) + (a.vocab_norms ? 0 : Scratch::round_up(V * sizeof(float))) +
                       Scratch::round_up(static_cast<size_t>(B * V) * sizeof(float)) +
                       2 * Scratch::round_up(static_cast<size_t>(first_candidates) * sizeof(float)) +
                       2 * Scratch::round_up(static_cast<size_t>(first_candidates) * sizeof(int32_t));
  Scratch scratch(op, bytes);
  float* query_norms = scratch.take<float>(B);
  launch_row_norms(a.dtype, a.queries, query_norms, B, a.dim, stream);
  const float* vocab_norms = a.vocab_norms;
  if (!vocab_norms) {
    float* computed = scratch.take<float>(V);
    launch_row_norms(a.dtype, a.vocab, computed, V, a.dim, stream);
    vocab_norms = computed;
  }
  float* sims = scratch.take<float>(B * V);
  switch (a.dtype) {
    case DType::F32: launch_cosine_sims<float>(a, query_norms, vocab_norms, sims, stream); break;
    case DType::F16: launch_cosine_sims<f16>(a, query_norms, vocab_norms, sims, stream); break;
    case DType::BF16: launch_cosine_sims<bf16>(a, query_norms, vocab_norms, sims, stream); break;
    default: fail(ErrorCode::DtypeMismatch, "token_topk_cosine: queries must be f32, f16 or bf16");
  }
  check_launch("token_topk_cosine (similarities)");
  float* cand_vals[2] = {scratch.take<float>(first_candidates), scratch.take<float>(first_candidates)};
  int32_t* cand_idx[2] = {scratch.take<int32_t>(first_candidates), scratch.take<int32_t>(first_candidates)};
  // Each pass keeps k of every 1024 candidates (k ≤ 256: at least 4× fewer)
  // until one chunk holds them all; that pass writes the outputs.
  const float* in_vals = sims;
  const int32_t* in_idx = nullptr;
  int64_t n = V;
  int flip = 0;
  for (;;) {
    const int64_t chunks = chunks_of(n);
    const bool last = chunks == 1;
    float* out_vals = last ? a.similarities : cand_vals[flip];
    int32_t* out_idx = last ? a.indices : cand_idx[flip];
    const int64_t out_stride = chunks * K;
    topk_chunk_kernel<<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(B)), kSortThreads, 0, stream>>>(
        in_vals, in_idx, n, out_vals, out_idx, out_stride, static_cast<int>(K));
    check_launch("token_topk_cosine (top-k pass)");
    if (last) break;
    in_vals = out_vals;
    in_idx = out_idx;
    n = out_stride;
    flip ^= 1;
  }
}

// ---- contrastive nearest-neighbour loss ------------------------------------------------

// logits[b, j] for j < K: q̂_b·n̂_bj/τ; for j = K + c, c ≠ b: q̂_b·q̂_c/τ (and 0
// at c = b, which is not a term). One warp per logit, rounded as the CPU does.
template <class T>
__global__ void contrastive_logits_kernel(const T* __restrict__ queries, const T* __restrict__ neighbours,
                                          const float* __restrict__ query_norms, const float* __restrict__ neighbour_norms,
                                          float* __restrict__ logits, int64_t B, int64_t K, int64_t D, float inv_temp) {
  const int lane = threadIdx.x & 31;
  const int64_t W = K + B;
  const int64_t warps_per_grid = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5); e < B * W;
       e += warps_per_grid) {
    const int64_t b = e / W, j = e % W;
    if (j >= K && j - K == b) {
      if (lane == 0) logits[e] = 0.0f;
      continue;
    }
    const T* q = queries + b * D;
    const T* x = j < K ? neighbours + (b * K + j) * D : queries + (j - K) * D;
    float acc = 0;
    for (int64_t d = lane; d < D; d += 32) acc += static_cast<float>(load(q[d])) * static_cast<float>(load(x[d]));
    acc = warp_sum(acc);
    if (lane == 0) {
      const float inv_x = inverse_norm(j < K ? neighbour_norms[b * K + j] : query_norms[j - K]);
      logits[e] = __fmul_rn(__fmul_rn(__fmul_rn(acc, inverse_norm(query_norms[b])), inv_x), inv_temp);
    }
  }
}

// Row b's two log-sum-exps, in the CPU's order (csrc/cpu/method_token_search.cc row_softmax).
struct RowSoftmax {
  float max_all, sum_all, max_pos, sum_pos;
};

__device__ RowSoftmax row_softmax(const float* logits, int64_t b, int64_t K, int64_t B) {
  float mp = logits[0];
  for (int64_t j = 1; j < K; ++j) mp = fmaxf(mp, logits[j]);
  float m = mp;
  for (int64_t c = 0; c < B; ++c) {
    if (c != b) m = fmaxf(m, logits[K + c]);
  }
  float sp = 0, sa = 0;
  for (int64_t j = 0; j < K; ++j) {
    sp += expf(logits[j] - mp);
    sa += expf(logits[j] - m);
  }
  for (int64_t c = 0; c < B; ++c) {
    if (c != b) sa += expf(logits[K + c] - m);
  }
  return {m, sa, mp, sp};
}

// One block: each thread takes rows b (L_b into row_loss), then thread 0
// adds them in order and writes the mean.
__global__ void __launch_bounds__(kBlockThreads) contrastive_loss_kernel(const float* __restrict__ logits,
                                                                         float* __restrict__ row_loss,
                                                                         float* __restrict__ loss, int64_t B, int64_t K) {
  const int64_t W = K + B;
  for (int64_t b = threadIdx.x; b < B; b += blockDim.x) {
    const RowSoftmax s = row_softmax(logits + b * W, b, K, B);
    row_loss[b] = (s.max_all + logf(s.sum_all)) - (s.max_pos + logf(s.sum_pos));
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0;
    for (int64_t b = 0; b < B; ++b) sum += row_loss[b];
    *loss = sum / static_cast<float>(B);
  }
}

// coef[b, j] = d(mean loss)/d(logit[b, j]) · scale (scale = grad_scale / (τ·B)); one thread per row.
__global__ void contrastive_coef_kernel(const float* __restrict__ logits, float* __restrict__ coef, int64_t B, int64_t K,
                                        float scale) {
  const int64_t W = K + B;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < B; b += stride) {
    const float* l = logits + b * W;
    const RowSoftmax s = row_softmax(l, b, K, B);
    for (int64_t j = 0; j < K; ++j) {
      coef[b * W + j] = (expf(l[j] - s.max_all) / s.sum_all - expf(l[j] - s.max_pos) / s.sum_pos) * scale;
    }
    for (int64_t c = 0; c < B; ++c) coef[b * W + K + c] = c != b ? expf(l[K + c] - s.max_all) / s.sum_all * scale : 0.0f;
  }
}

// Block b: g = ∂L/∂q̂_b (kept in g_scratch [B, D]), then dq_b = (g − q̂_b(q̂_b·g)) / ‖q_b‖.
// Each thread owns the same columns d in both loops, so it rereads only its own writes.
template <class T>
__global__ void __launch_bounds__(kBlockThreads) contrastive_grad_kernel(
    const T* __restrict__ queries, const T* __restrict__ neighbours, const float* __restrict__ query_norms,
    const float* __restrict__ neighbour_norms, const float* __restrict__ coef, float* __restrict__ g_scratch,
    T* __restrict__ dqueries, int64_t B, int64_t K, int64_t D) {
  const int64_t b = blockIdx.x;
  const int64_t W = K + B;
  float* g = g_scratch + b * D;
  const T* q = queries + b * D;
  float radial_part = 0;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0;
    for (int64_t j = 0; j < K; ++j) {
      const float n = load(neighbours[(b * K + j) * D + d]);
      acc += coef[b * W + j] * __fmul_rn(n, inverse_norm(neighbour_norms[b * K + j]));
    }
    for (int64_t c = 0; c < B; ++c) {
      if (c == b) continue;
      const float w = coef[b * W + K + c] + coef[c * W + K + b];
      acc += w * __fmul_rn(static_cast<float>(load(queries[c * D + d])), inverse_norm(query_norms[c]));
    }
    g[d] = acc;
    radial_part += static_cast<float>(load(q[d])) * acc;
  }
  const float inv = inverse_norm(query_norms[b]);
  const float radial = __fmul_rn(block_sum(radial_part), inv);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    const float qd = load(q[d]);
    dqueries[b * D + d] = store<T>(__fmul_rn(__fsub_rn(g[d], __fmul_rn(__fmul_rn(qd, inv), radial)), inv));
  }
}

// The pieces both directions share: norms and logits in scratch.
struct ContrastiveScratch {
  float* query_norms;
  float* neighbour_norms;
  float* logits;
};

template <class T>
ContrastiveScratch contrastive_logits(const ContrastiveNnArgs& a, Scratch& scratch, cudaStream_t stream) {
  const int64_t B = a.batch, K = a.k, D = a.dim;
  ContrastiveScratch s;
  s.query_norms = scratch.take<float>(B);
  s.neighbour_norms = scratch.take<float>(B * K);
  s.logits = scratch.take<float>(B * (K + B));
  launch_row_norms(a.dtype, a.queries, s.query_norms, B, D, stream);
  launch_row_norms(a.dtype, a.neighbours, s.neighbour_norms, B * K, D, stream);
  contrastive_logits_kernel<T><<<grid_size(B * (K + B) * 32), kThreads, 0, stream>>>(
      static_cast<const T*>(a.queries), static_cast<const T*>(a.neighbours), s.query_norms, s.neighbour_norms, s.logits,
      B, K, D, static_cast<float>(1.0 / a.temperature));
  check_launch("contrastive_nn_loss (logits)");
  return s;
}

size_t contrastive_scratch_bytes(const ContrastiveNnArgs& a) {
  const int64_t B = a.batch, K = a.k;
  return Scratch::round_up(B * sizeof(float)) + Scratch::round_up(static_cast<size_t>(B * K) * sizeof(float)) +
         Scratch::round_up(static_cast<size_t>(B * (K + B)) * sizeof(float));
}

template <class T>
void contrastive_forward(const ContrastiveNnArgs& a) {
  const char* op = "contrastive_nn_loss_forward";
  cudaStream_t stream = current_stream();
  Scratch scratch(op, contrastive_scratch_bytes(a) + Scratch::round_up(a.batch * sizeof(float)));
  const ContrastiveScratch s = contrastive_logits<T>(a, scratch, stream);
  float* row_loss = scratch.take<float>(a.batch);
  contrastive_loss_kernel<<<1, kBlockThreads, 0, stream>>>(s.logits, row_loss, static_cast<float*>(a.out), a.batch, a.k);
  check_launch(op);
}

template <class T>
void contrastive_backward(const ContrastiveNnArgs& a) {
  const char* op = "contrastive_nn_loss_backward";
  const int64_t B = a.batch, K = a.k, D = a.dim;
  cudaStream_t stream = current_stream();
  Scratch scratch(op, contrastive_scratch_bytes(a) + Scratch::round_up(static_cast<size_t>(B * (K + B)) * sizeof(float)) +
                          Scratch::round_up(static_cast<size_t>(B * D) * sizeof(float)));
  const ContrastiveScratch s = contrastive_logits<T>(a, scratch, stream);
  float* coef = scratch.take<float>(B * (K + B));
  float* g = scratch.take<float>(B * D);
  const float scale = static_cast<float>(a.grad_scale / (a.temperature * static_cast<double>(B)));
  contrastive_coef_kernel<<<grid_size(B), kThreads, 0, stream>>>(s.logits, coef, B, K, scale);
  check_launch("contrastive_nn_loss_backward (coefficients)");
  contrastive_grad_kernel<T><<<static_cast<unsigned>(B), kBlockThreads, 0, stream>>>(
      static_cast<const T*>(a.queries), static_cast<const T*>(a.neighbours), s.query_norms, s.neighbour_norms, coef, g,
      static_cast<T*>(a.out), B, K, D);
  check_launch(op);
}

void contrastive_nn_loss_forward_cuda(const ContrastiveNnArgs& a) {
  switch (a.dtype) {
    case DType::F32: contrastive_forward<float>(a); break;
    case DType::F16: contrastive_forward<f16>(a); break;
    case DType::BF16: contrastive_forward<bf16>(a); break;
    default: fail(ErrorCode::DtypeMismatch, "contrastive_nn_loss_forward: queries must be f32, f16 or bf16");
  }
}

void contrastive_nn_loss_backward_cuda(const ContrastiveNnArgs& a) {
  switch (a.dtype) {
    case DType::F32: contrastive_backward<float>(a); break;
    case DType::F16: contrastive_backward<f16>(a); break;
    case DType::BF16: contrastive_backward<bf16>(a); break;
    default: fail(ErrorCode::DtypeMismatch, "contrastive_nn_loss_backward: queries must be f32, f16 or bf16");
  }
}

}  // namespace

IMPRINT_REGISTER_KERNEL(token_vocab_norms, CUDA, RowNormsArgs, token_vocab_norms_cuda);
IMPRINT_REGISTER_KERNEL(token_topk_cosine, CUDA, TokenTopkArgs, token_topk_cosine_cuda);
IMPRINT_REGISTER_KERNEL(contrastive_nn_loss_forward, CUDA, ContrastiveNnArgs, contrastive_nn_loss_forward_cuda);
IMPRINT_REGISTER_KERNEL(contrastive_nn_loss_backward, CUDA, ContrastiveNnArgs, contrastive_nn_loss_backward_cuda);

}  // namespace cuda
}  // namespace imprint
