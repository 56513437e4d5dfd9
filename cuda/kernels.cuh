// CUDA kernel launchers: one per kernel family, each taking the launch
// description from core/kernel_args.h (the same one the CPU kernels take) and
// queueing the work on `stream`. They only compute; validation happened in
// csrc/ops. Each throws CUDA_ERROR when the launch fails.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/kernel_args.h"

namespace imprint {
namespace cuda {

// Backend::matmul: through gemm() (gemm.cuh) when each operand's batch entries
// are one plain stride apart, else the SIMT kernel.
void launch_matmul(const MatmulArgs& args, cudaStream_t stream);  // matmul.cu
void launch_binary(const BinaryArgs& args, cudaStream_t stream);  // elementwise.cu
void launch_cast(const CastArgs& args, cudaStream_t stream);      // elementwise.cu
void launch_fill(const FillArgs& args, cudaStream_t stream);      // elementwise.cu
void launch_sum(const SumArgs& args, cudaStream_t stream);        // reduce.cu
void launch_random(const RandomArgs& args, cudaStream_t stream);  // random.cu

// The stream of the current device's backend. Registered kernels (the nn op
// library: conv, norms, attention, ...) run after Backend::make_current and
// queue their work here, so everything of a device stays in order on one stream.
cudaStream_t current_stream();  // cuda_backend.cu

// The GEMM library the current device uses ("cuBLAS 13.1", "imprint
// tensor-core", ...), for the status API.
const char* gemm_library();  // gemm_cublas.cu

// Threads per block for the one-dimensional grid-stride kernels.
constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items: enough to fill any current GPU
// many times over, and never more than the loop needs.
inline unsigned grid_size(int64_t n, int threads = kThreads) {
  const int64_t max_blocks = int64_t{1} << 16;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, max_blocks)));
}

}  // namespace cuda
}  // namespace imprint
