// The masked MSE loss and its gradient on the GPU (csrc/cpu/loss.cc is the
// reference).
//
// The long sums (loss numerator, mask sum) are two-stage: a fixed grid writes
// one double partial per block, then a single block adds the partials in
// index order (block_reduce.cuh). The grid depends only on the sizes, so
// results are deterministic; they agree with the CPU's (also double) sums to
// rounding. Scalars derived from those sums (the loss, the gradient
// coefficient) stay on the device: nothing here waits for the GPU.
//
// Elementwise f32 arithmetic uses the __f*_rn intrinsics: they are never
// fused into FMAs, so each operation rounds as the CPU's does.
#include <algorithm>
#include <string>
#include <type_traits>

#include "block_reduce.cuh"
#include "caching_allocator.cuh"
#include "core/args/loss.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "float_dispatch.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

constexpr int64_t kMaxPartials = 1024;  // blocks of the first stage of a flat sum

// The coalesced broadcast of the mask over pred (MseLossArgs' shape and strides).
struct MaskWalk {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t strides[kMaxDims];
};

__device__ __forceinline__ int64_t mask_offset(const MaskWalk& w, int64_t e) {
  int64_t off = 0;
  for (int d = w.ndim - 1; d >= 0; --d) {
    const int64_t q = e / w.shape[d];
    off += (e - q * w.shape[d]) * w.strides[d];
    e = q;
  }
  return off;
}

// Block b's share of Σ (pred − target)²·mask (f32 products, as the CPU forms
// them) and of Σ mask, in double.
template <class T>
__global__ void mse_partials(const T* pred, const T* target, const T* mask, MaskWalk walk, int64_t numel,
                             int64_t mask_numel, bool want_numerator, double* partial_num, double* partial_mask) {
  __shared__ double shared[kReduceThreads];
  const int64_t start = blockIdx.x * int64_t{kReduceThreads} + threadIdx.x, step = int64_t{gridDim.x} * kReduceThreads;
  double num = 0, msum = 0;
  if (want_numerator) {
    for (int64_t e = start; e < numel; e += step) {
      const float d = __fsub_rn(load(pred[e]), load(target[e]));
      float sq = __fmul_rn(d, d);
      if (mask != nullptr) sq = __fmul_rn(sq, load(mask[mask_offset(walk, e)]));
      num += static_cast<double>(sq);
    }
  }
  if (mask != nullptr)
    for (int64_t e = start; e < mask_numel; e += step) msum += static_cast<double>(load(mask[e]));
  num = block_reduce(num, shared, Combine::Sum);
  __syncthreads();  // the tree's last read of shared[0] before it is reused
  msum = block_reduce(msum, shared, Combine::Sum);
  if (threadIdx.x == 0) {
    partial_num[blockIdx.x] = num;
    partial_mask[blockIdx.x] = msum;
  }
}

// Adds the partials in order. D = Σ mask · (numel / mask_numel), or numel
// without a mask. Forward: loss = numerator / D. Backward: coef = 2·gradScale / D.
template <class T>
__global__ void mse_finish(const double* partial_num, const double* partial_mask, int parts, bool has_mask,
                           int64_t numel, int64_t mask_numel, double grad_scale, T* loss, float* coef) {
  __shared__ double shared[kReduceThreads];
  double num = 0, msum = 0;
  for (int k = threadIdx.x; k < parts; k += kReduceThreads) {
    num += partial_num[k];
    msum += partial_mask[k];
  }
  num = block_reduce(num, shared, Combine::Sum);
  __syncthreads();
  msum = block_reduce(msum, shared, Combine::Sum);
  if (threadIdx.x != 0) return;
  double den = static_cast<double>(numel);
  if (has_mask) den = mask_numel == 0 ? 0.0 : msum * static_cast<double>(numel / mask_numel);
  if (loss != nullptr) *loss = store<T>(static_cast<float>(num / den));
  if (coef != nullptr) *coef = static_cast<float>(2.0 * grad_scale / den);
}

// dpred = coef·(pred − target), times the mask as the CPU orders it: rows
// whose mask is one value (last stride 0) scale coef first, others multiply last.
template <class T>
__global__ void mse_grad(const T* pred, const T* target, const T* mask, MaskWalk walk, int64_t numel, const float* coef_ptr,
                         T* dpred) {
  const float coef = *coef_ptr;
  const bool row_constant = walk.strides[walk.ndim - 1] == 0;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < numel; e += int64_t{gridDim.x} * blockDim.x) {
    const float d = __fsub_rn(load(pred[e]), load(target[e]));
    float g;
    if (mask == nullptr) {
      g = __fmul_rn(coef, d);
    } else {
      const float m = load(mask[mask_offset(walk, e)]);
      g = row_constant ? __fmul_rn(__fmul_rn(coef, m), d) : __fmul_rn(__fmul_rn(coef, d), m);
    }
    dpred[e] = store<T>(g);
  }
}

MaskWalk mask_walk(const MseLossArgs& a) {
  MaskWalk w{};
  w.ndim = a.ndim;
  for (int d = 0; d < a.ndim; ++d) {
    w.shape[d] = a.shape[d];
    w.strides[d] = a.mask_strides[d];
  }
  return w;
}

int partial_blocks(int64_t n) {
  const int64_t per_block = int64_t{kReduceThreads} * 16;  // at least 16 elements per thread
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(kMaxPartials, (n + per_block - 1) / per_block)));
}

// Queues the partials and the finish; `loss` (forward) or `coef` (backward) receives the result.
template <class T>
void mse_reduce(const MseLossArgs& a, bool want_numerator, T* loss, float* coef, const char* op) {
  const T* mask = static_cast<const T*>(a.mask);
  const int parts = partial_blocks(std::max(want_numerator ? a.numel : 0, mask ? a.mask_numel : 0));
  DeviceScratch partials(sizeof(double) * 2 * static_cast<size_t>(parts), (std::string(op) + " partial sums").c_str());
  double* num = partials.as<double>();
  double* msum = num + parts;
  mse_partials<<<parts, kReduceThreads, 0, current_stream()>>>(static_cast<const T*>(a.pred),
                                                               static_cast<const T*>(a.target), mask, mask_walk(a),
                                                               a.numel, a.mask_numel, want_numerator, num, msum);
  check_launch(op);
  mse_finish<<<1, kReduceThreads, 0, current_stream()>>>(num, msum, parts, mask != nullptr, a.numel, a.mask_numel,
                                                          a.grad_scale, loss, coef);
  check_launch(op);
}

template <class T>
void mse_forward_typed(const MseLossArgs& a) {
  mse_reduce<T>(a, true, static_cast<T*>(a.out), nullptr, "mse_loss_forward");
}

template <class T>
void mse_backward_typed(const MseLossArgs& a) {
  DeviceScratch coef(sizeof(float), "mse_loss_backward's coefficient");
  mse_reduce<T>(a, false, nullptr, coef.as<float>(), "mse_loss_backward");
  mse_grad<<<grid_size(a.numel), kThreads, 0, current_stream()>>>(static_cast<const T*>(a.pred),
                                                                  static_cast<const T*>(a.target),
                                                                  static_cast<const T*>(a.mask), mask_walk(a), a.numel,
                                                                  coef.as<float>(), static_cast<T*>(a.out));
  check_launch("mse_loss_backward");
}

void mse_loss_forward_cuda(const MseLossArgs& a) {
  require_float("mse_loss_forward", a.dtype);
  IMPRINT_CUDA_DISPATCH(a.dtype, T, if constexpr (is_float_type<T>) mse_forward_typed<T>(a));
}

void mse_loss_backward_cuda(const MseLossArgs& a) {
  require_float("mse_loss_backward", a.dtype);
  if (a.numel == 0) return;
  IMPRINT_CUDA_DISPATCH(a.dtype, T, if constexpr (is_float_type<T>) mse_backward_typed<T>(a));
}

}  // namespace
}  // namespace cuda

IMPRINT_REGISTER_KERNEL(mse_loss_forward, CUDA, MseLossArgs, cuda::mse_loss_forward_cuda);
IMPRINT_REGISTER_KERNEL(mse_loss_backward, CUDA, MseLossArgs, cuda::mse_loss_backward_cuda);

}  // namespace imprint
