// Warp and block reductions for the nn kernels (norms, softmax, attention).
// reduce.cu keeps its own copies private; these are the shared ones.
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

}  // namespace cuda
}  // namespace imprint
