// Gradient-norm clipping on the GPU (csrc/cpu/clip_grad_norm.cc is the
// reference).
//
// The norm is two-stage: one double partial per chunk of kClipChunk elements
// (the CPU's blocks), then a single block combines the partials in index
// order (block_reduce.cuh), so the result is deterministic and agrees with
// the CPU's (also double) sums to rounding. The clip factor stays on the
// device: nothing here waits for the GPU.
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "block_reduce.cuh"
#include "caching_allocator.cuh"
#include "core/args/clip_grad_norm.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "float_dispatch.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

constexpr int64_t kClipChunk = 1 << 16;  // elements per block, the CPU's kSumBlock
constexpr int kClipTensors = 32;         // tensors per launch (passed by value)

// Up to kClipTensors gradients of one launch; block b works on chunk
// b − first_block[t] of the tensor t with first_block[t] ≤ b < first_block[t + 1].
struct ClipBatch {
  const void* grads[kClipTensors];
  void* outs[kClipTensors];
  int64_t numels[kClipTensors];
  int64_t first_block[kClipTensors + 1];
  int count;
};

__device__ __forceinline__ int batch_tensor(const ClipBatch& batch, int64_t b) {
  int t = 0;
  while (t + 1 < batch.count && batch.first_block[t + 1] <= b) ++t;
  return t;
}

// One double partial per chunk: Σ x² (f32 squares), Σ |x|, max |x| or Σ |x|^p.
template <class T>
__global__ void clip_partials(ClipBatch batch, double norm_type, int64_t partial_offset, double* partials) {
  __shared__ double shared[kReduceThreads];
  const int64_t b = blockIdx.x;
  const int t = batch_tensor(batch, b);
  const T* x = static_cast<const T*>(batch.grads[t]);
  const int64_t begin = (b - batch.first_block[t]) * kClipChunk;
  const int64_t end = begin + kClipChunk < batch.numels[t] ? begin + kClipChunk : batch.numels[t];
  const bool is_max = isinf(norm_type);
  double acc = 0;
  float mx = 0.0f;
  for (int64_t i = begin + threadIdx.x; i < end; i += kReduceThreads) {
    const float xi = load(x[i]);
    if (norm_type == 2.0) acc += static_cast<double>(__fmul_rn(xi, xi));
    else if (norm_type == 1.0) acc += static_cast<double>(fabsf(xi));
    else if (is_max) mx = (fabsf(xi) > mx || xi != xi) ? fabsf(xi) : mx;
    else acc += pow(fabs(static_cast<double>(xi)), norm_type);
  }
  if (is_max) acc = mx;
  acc = block_reduce(acc, shared, is_max ? Combine::MaxNan : Combine::Sum);
  if (threadIdx.x == 0) partials[partial_offset + b] = acc;
}

// Adds (or maxes) the partials in order, writes the total norm and the clip
// factor min(1, max_norm / (total + 1e-6)); a NaN factor stays NaN as in torch.
template <class T>
__global__ void clip_finish(const double* partials, int64_t parts, double norm_type, double max_norm, T* total_norm,
                            float* coef) {
  __shared__ double shared[kReduceThreads];
  const bool is_max = isinf(norm_type);
  const Combine how = is_max ? Combine::MaxNan : Combine::Sum;
  double acc = 0;
  for (int64_t k = threadIdx.x; k < parts; k += kReduceThreads) acc = combine(acc, partials[k], how);
  acc = block_reduce(acc, shared, how);
  if (threadIdx.x != 0) return;
  double total = acc;
  if (!is_max) total = norm_type == 2.0 ? sqrt(acc) : norm_type == 1.0 ? acc : pow(acc, 1.0 / norm_type);
  *total_norm = store<T>(static_cast<float>(total));
  const double raw = max_norm / (total + 1e-6);
  *coef = static_cast<float>(raw > 1.0 ? 1.0 : raw);
}

template <class T>
__global__ void clip_scale(ClipBatch batch, const float* coef_ptr) {
  const float coef = *coef_ptr;
  const int64_t b = blockIdx.x;
  const int t = batch_tensor(batch, b);
  const T* x = static_cast<const T*>(batch.grads[t]);
  T* y = static_cast<T*>(batch.outs[t]);
  const int64_t begin = (b - batch.first_block[t]) * kClipChunk;
  const int64_t end = begin + kClipChunk < batch.numels[t] ? begin + kClipChunk : batch.numels[t];
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) y[i] = store<T>(__fmul_rn(load(x[i]), coef));
}

// The gradients in launches of at most kClipTensors tensors.
std::vector<ClipBatch> clip_batches(const ClipGradNormArgs& a) {
  std::vector<ClipBatch> batches;
  for (size_t t = 0; t < a.grads.size(); ++t) {
    if (a.numels[t] == 0) continue;
    if (batches.empty() || batches.back().count == kClipTensors) {
      batches.emplace_back();
      batches.back().count = 0;
      batches.back().first_block[0] = 0;
    }
    ClipBatch& b = batches.back();
    b.grads[b.count] = a.grads[t];
    b.outs[b.count] = a.grads_out[t];
    b.numels[b.count] = a.numels[t];
    b.first_block[b.count + 1] = b.first_block[b.count] + (a.numels[t] + kClipChunk - 1) / kClipChunk;
    ++b.count;
  }
  return batches;
}

template <class T>
void clip_typed(const ClipGradNormArgs& a) {
  const std::vector<ClipBatch> batches = clip_batches(a);
  int64_t parts = 0;
  for (const ClipBatch& b : batches) parts += b.first_block[b.count];
  // The partials, then the clip factor, in one scratch block.
  DeviceScratch scratch(sizeof(double) * static_cast<size_t>(parts) + sizeof(double), "clip_grad_norm's partial norms");
  double* partials = scratch.as<double>();
  float* coef = reinterpret_cast<float*>(partials + parts);
  int64_t offset = 0;
  for (const ClipBatch& b : batches) {
    const int64_t blocks = b.first_block[b.count];
    clip_partials<T><<<static_cast<unsigned>(blocks), kReduceThreads, 0, current_stream()>>>(b, a.norm_type, offset, partials);
    check_launch("clip_grad_norm");
    offset += blocks;
  }
  clip_finish<T><<<1, kReduceThreads, 0, current_stream()>>>(partials, parts, a.norm_type, a.max_norm,
                                                             static_cast<T*>(a.total_norm), coef);
  check_launch("clip_grad_norm");
  for (const ClipBatch& b : batches) {
    clip_scale<T><<<static_cast<unsigned>(b.first_block[b.count]), kThreads, 0, current_stream()>>>(b, coef);
    check_launch("clip_grad_norm");
  }
}

void clip_grad_norm_cuda(const ClipGradNormArgs& a) {
  require_float("clip_grad_norm", a.dtype);
  IMPRINT_CUDA_DISPATCH(a.dtype, T, if constexpr (is_float_type<T>) clip_typed<T>(a));
}

}  // namespace
}  // namespace cuda

IMPRINT_REGISTER_KERNEL(clip_grad_norm, CUDA, ClipGradNormArgs, cuda::clip_grad_norm_cuda);

}  // namespace imprint
