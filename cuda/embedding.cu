// Token and timestep embeddings on the GPU (csrc/cpu/embedding.cc is the
// reference): the row gather, its gradient (a deterministic scatter-add), and
// diffusers' sinusoidal timestep embedding.
//
// Ids are data on the device, so unlike the CPU kernel these cannot throw on
// an out-of-range id without waiting for the GPU. Instead a bad id never
// reads or writes outside the table: the forward writes a row of zeros for it
// and the backward leaves it out. Callers that take ids from users check them
// on the host first (clip_text_check_ids).
#include <cmath>
#include <string>
#include <type_traits>

#include "core/args/embedding.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "float_dispatch.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

template <class Id>
__device__ __forceinline__ int64_t id_at(const Id* ids, int64_t i) {
  return static_cast<int64_t>(ids[i]);
}

// out[i, c] = table[ids[i], c]: one thread per output element (rows are
// contiguous, so neighbouring threads read neighbouring table entries).
template <class T, class Id>
__global__ void gather_rows(const Id* ids, const T* table, T* out, int64_t n, int64_t vocab, int64_t dim) {
  const int64_t total = n * dim;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = e / dim, c = e - i * dim;
    const int64_t id = id_at(ids, i);
    out[e] = (id >= 0 && id < vocab) ? table[id * dim + c] : store<T>(0.0f);
  }
}

// One block per position i. The block whose position is the first occurrence
// of its id (among the ids its row mask admits) owns that id's row: its
// threads take columns and add the dy rows of every position holding the id
// in input order, in double, as the CPU's stable grouping does; other blocks
// return at once. Deterministic, no atomics; the cost is O(n) per position,
// meant for text-encoder batches (thousands of ids, not millions).
template <class T, class Id>
__global__ void scatter_rows(const T* dy, const Id* ids, const uint8_t* row_mask, T* dtable, int64_t n, int64_t vocab,
                             int64_t dim) {
  __shared__ int earlier;  // 1 when an earlier position holds the same id
  const int64_t i = blockIdx.x;
  const int64_t id = id_at(ids, i);
  if (id < 0 || id >= vocab) return;                  // never touches memory outside the table
  if (row_mask != nullptr && row_mask[id] == 0) return;  // the row stays zero
  if (threadIdx.x == 0) earlier = 0;
  __syncthreads();
  for (int64_t j = threadIdx.x; j < i; j += blockDim.x) {
    if (id_at(ids, j) == id) {
      earlier = 1;  // benign race: every writer writes 1
      break;
    }
  }
  __syncthreads();
  if (earlier) return;
  T* row = dtable + id * dim;
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
    double acc = 0;
    for (int64_t j = i; j < n; ++j)
      if (id_at(ids, j) == id) acc += static_cast<double>(load(dy[j * dim + c]));
    row[c] = store<T>(static_cast<float>(acc));
  }
}

template <class T, class Id>
void embedding_forward_typed(const EmbeddingForwardArgs& a) {
  const int64_t total = a.n * a.dim;
  gather_rows<<<grid_size(total), kThreads, 0, current_stream()>>>(
      static_cast<const Id*>(a.ids), static_cast<const T*>(a.table), static_cast<T*>(a.out), a.n, a.vocab, a.dim);
  check_launch("embedding_forward");
}

template <class T, class Id>
void embedding_backward_typed(const EmbeddingBackwardArgs& a) {
  // Every row starts at zero (all-zero bits are 0.0 in each float dtype); the
  // kernel then writes only the rows some id touches.
  IMPRINT_CUDA_CHECK(cudaMemsetAsync(a.dtable, 0, static_cast<size_t>(a.vocab * a.dim) * sizeof(T), current_stream()));
  if (a.n == 0) return;
  // Grid x allows 2^31 − 1 blocks, far more positions than any batch of ids.
  const int threads = a.dim >= 256 ? 256 : 128;
  scatter_rows<<<static_cast<unsigned>(a.n), threads, 0, current_stream()>>>(
      static_cast<const T*>(a.dy), static_cast<const Id*>(a.ids), a.row_mask, static_cast<T*>(a.dtable), a.n, a.vocab,
      a.dim);
  check_launch("embedding_backward");
}

// Row i: [sin(scale·t·freq_j)], [cos(...)] (halves swapped by flip), then a
// zero column when dim is odd. One thread per (row, j); the frequencies and
// the sines are computed in double like the CPU, so both round the same
// double to f32.
template <class T>
__global__ void timestep_rows(const T* t, T* out, int64_t n, int64_t dim, int64_t half, bool flip, double neg_log_period,
                              double freq_shift, double scale) {
  const int64_t cols = half + (dim % 2);  // the pad column gets its own thread
  const int64_t total = n * cols;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = e / cols, j = e - i * cols;
    T* row = out + i * dim;
    if (j == half) {
      row[dim - 1] = store<T>(0.0f);
      continue;
    }
    const double freq = exp(neg_log_period * static_cast<double>(j) / (static_cast<double>(half) - freq_shift));
    const double arg = scale * (static_cast<double>(load(t[i])) * freq);
    row[(flip ? half : 0) + j] = store<T>(static_cast<float>(sin(arg)));
    row[(flip ? 0 : half) + j] = store<T>(static_cast<float>(cos(arg)));
  }
}

void embedding_forward_cuda(const EmbeddingForwardArgs& a) {
  require_float("embedding_forward", a.dtype);
  if (a.n == 0 || a.dim == 0) return;
  IMPRINT_CUDA_DISPATCH(a.dtype, T, if constexpr (is_float_type<T>) {
    if (a.id_dtype == DType::I32) embedding_forward_typed<T, int32_t>(a);
    else embedding_forward_typed<T, int64_t>(a);
  });
}

void embedding_backward_cuda(const EmbeddingBackwardArgs& a) {
  require_float("embedding_backward", a.dtype);
  if (a.dim == 0 || a.vocab == 0) return;
  IMPRINT_CUDA_DISPATCH(a.dtype, T, if constexpr (is_float_type<T>) {
    if (a.id_dtype == DType::I32) embedding_backward_typed<T, int32_t>(a);
    else embedding_backward_typed<T, int64_t>(a);
  });
}

template <class T>
void timestep_embedding_typed(const TimestepEmbeddingArgs& a, int64_t half, int64_t total) {
  // log on the host, as the CPU computes it (one value; the device's exp and sin follow).
  const double neg_log_period = -std::log(a.max_period);
  timestep_rows<<<grid_size(total), kThreads, 0, current_stream()>>>(static_cast<const T*>(a.timesteps),
                                                                     static_cast<T*>(a.out), a.n, a.dim, half,
                                                                     a.flip_sin_to_cos, neg_log_period, a.freq_shift, a.scale);
  check_launch("timestep_embedding_forward");
}

void timestep_embedding_forward_cuda(const TimestepEmbeddingArgs& a) {
  require_float("timestep_embedding_forward", a.dtype);
  const int64_t half = a.dim / 2;
  const int64_t total = a.n * (half + a.dim % 2);
  if (total == 0) return;
  IMPRINT_CUDA_DISPATCH(a.dtype, T, if constexpr (is_float_type<T>) timestep_embedding_typed<T>(a, half, total));
}

}  // namespace
}  // namespace cuda

IMPRINT_REGISTER_KERNEL(embedding_forward, CUDA, EmbeddingForwardArgs, cuda::embedding_forward_cuda);
IMPRINT_REGISTER_KERNEL(embedding_backward, CUDA, EmbeddingBackwardArgs, cuda::embedding_backward_cuda);
IMPRINT_REGISTER_KERNEL(timestep_embedding_forward, CUDA, TimestepEmbeddingArgs, cuda::timestep_embedding_forward_cuda);

}  // namespace imprint
