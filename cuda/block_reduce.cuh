// Warp and block reductions shared by the kernels: warp and block sums and
// maxima (norms, softmax, attention, the sum op in reduce.cu), and a
// fixed-tree block reduction in double whose order depends only on the block
// size (the deterministic two-stage sums of loss.cu and clip_grad_norm.cu).
#pragma once
#include <cuda_runtime.h>

namespace imprint {
namespace cuda {

template <class A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int delta = 16; delta > 0; delta >>= 1) v += __shfl_xor_sync(0xffffffffu, v, delta);
  return v;
}

// fmaxf drops a NaN operand; callers that must propagate NaN do so through
// the values they later exponentiate (NaN − max stays NaN).
__device__ __forceinline__ float warp_max(float v) {
  for (int delta = 16; delta > 0; delta >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, delta));
  return v;
}

// Sum over a one-dimensional block whose size is a multiple of 32, valid in
// every thread. Ends with a barrier so the caller may call it again at once.
template <class A>
__device__ __forceinline__ A block_sum(A v) {
  __shared__ A warp_sums[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  A total = A(0);
  for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) total += warp_sums[w];
  __syncthreads();
  return total;
}

__device__ __forceinline__ float block_max(float v) {
  __shared__ float warp_maxes[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max(v);
  if (lane == 0) warp_maxes[warp] = v;
  __syncthreads();
  float m = warp_maxes[0];
  for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) m = fmaxf(m, warp_maxes[w]);
  __syncthreads();
  return m;
}

// Threads of a block_reduce block.
constexpr int kReduceThreads = 256;

// How two partials combine: a sum, or a max in which a NaN sticks (torch's max).
enum class Combine { Sum, MaxNan };

__device__ __forceinline__ double combine(double a, double b, Combine how) {
  if (how == Combine::Sum) return a + b;
  return (b > a || b != b) ? b : a;
}

// Reduces v over the block (kReduceThreads threads) in a fixed tree; the
// result is valid in thread 0. `shared` holds kReduceThreads doubles.
__device__ __forceinline__ double block_reduce(double v, double* shared, Combine how) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) shared[threadIdx.x] = combine(shared[threadIdx.x], shared[threadIdx.x + stride], how);
    __syncthreads();
  }
  return shared[0];
}

}  // namespace cuda
}  // namespace imprint
