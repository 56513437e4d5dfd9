// The training step's tail on the GPU: masked MSE loss and its gradient
// (csrc/cpu/misc_loss.cc), one AdamW update and gradient-norm clipping
// (csrc/cpu/misc_optim.cc).
//
// The long sums (loss numerator, mask sum, gradient norm) are two-stage: a
// fixed grid writes one double partial per block, then a single block adds the
// partials in index order. The grid depends only on the sizes, so results are
// deterministic; they agree with the CPU's (also double) sums to rounding.
// Scalars derived from those sums (the loss, the gradient coefficient, the
// clip factor) stay on the device: nothing here waits for the GPU.
//
// Elementwise f32 arithmetic uses the __f*_rn intrinsics: they are never
// fused into FMAs, so each operation rounds as the CPU's does (AdamW matches
// the CPU bit for bit in f32).
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "caching_allocator.cuh"
#include "core/args/misc.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "float_dispatch.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

constexpr int kReduceThreads = 256;
constexpr int64_t kMaxPartials = 1024;  // blocks of the first stage of a flat sum

template <class T>
constexpr bool is_float_type = std::is_same<T, float>::value || is_half<T>;

void require_float(const char* op, DType dtype) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16) {
    fail(ErrorCode::Unsupported, std::string(op) + " on cuda supports f32, f16 and bf16, got " + dtype_name(dtype));
  }
}

// How two partials combine: a sum, or a max in which a NaN sticks (torch's max).
enum class Combine { Sum, MaxNan };

__device__ __forceinline__ double combine(double a, double b, Combine how) {
  if (how == Combine::Sum) return a + b;
  return (b > a || b != b) ? b : a;
}

// Reduces v over the block (kReduceThreads threads) in a fixed tree; the
// result is valid in thread 0. `shared` holds kReduceThreads doubles.
__device__ double block_reduce(double v, double* shared, Combine how) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) shared[threadIdx.x] = combine(shared[threadIdx.x], shared[threadIdx.x + stride], how);
    __syncthreads();
  }
  return shared[0];
}

// ---- masked MSE --------------------------------------------------------------

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

// ---- AdamW -------------------------------------------------------------------

// The CPU's AdamwScalars: PyTorch's Python floats rounded to f32.
struct AdamwScalars {
  float decay, b1, one_minus_b1, b2, one_minus_b2, neg_step_size, bc2_sqrt, eps;
};

// The CPU's adamw_range, operation for operation:
//   m ← m·β1 + (1 − β1)·g;  v ← v·β2 + ((1 − β2)·g)·g
//   p ← p·decay + neg_step · (m / (√v / √bc2 + eps))
// T: the state (param, moments); G: the grad; C: the low-precision copy of the
// new param that mixed precision writes beside its f32 master (copy_out non-null).
template <class T, class G, class C>
__global__ void adamw_kernel(const T* p, const G* g, const T* m, const T* v, T* p_out, T* m_out, T* v_out,
                             C* copy_out, int64_t n, AdamwScalars s) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float gi = load(g[i]);
    const float mi = __fadd_rn(__fmul_rn(load(m[i]), s.b1), __fmul_rn(s.one_minus_b1, gi));
    const float vi = __fadd_rn(__fmul_rn(load(v[i]), s.b2), __fmul_rn(__fmul_rn(s.one_minus_b2, gi), gi));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
    const float pi = __fadd_rn(__fmul_rn(load(p[i]), s.decay), __fmul_rn(s.neg_step_size, __fdiv_rn(mi, denom)));
    p_out[i] = store<T>(pi);
    m_out[i] = store<T>(mi);
    v_out[i] = store<T>(vi);
    if (copy_out != nullptr) copy_out[i] = store<C>(pi);
  }
}

template <class T, class G, class C>
void adamw_typed(const AdamwStepArgs& a, const AdamwScalars& s) {
  adamw_kernel<T, G, C><<<grid_size(a.numel), kThreads, 0, current_stream()>>>(
      static_cast<const T*>(a.param), static_cast<const G*>(a.grad), static_cast<const T*>(a.exp_avg),
      static_cast<const T*>(a.exp_avg_sq), static_cast<T*>(a.param_out), static_cast<T*>(a.exp_avg_out),
      static_cast<T*>(a.exp_avg_sq_out), static_cast<C*>(a.param_copy_out), a.numel, s);
  check_launch("adamw_step");
}

void adamw_step_cuda(const AdamwStepArgs& a) {
  require_float("adamw_step", a.dtype);
  if (a.numel == 0) return;
  // The scalars exactly as the CPU derives them (double, then f32).
  const double step = static_cast<double>(a.step);
  AdamwScalars s;
  s.decay = static_cast<float>(1.0 - a.lr * a.weight_decay);
  s.b1 = static_cast<float>(a.beta1);
  s.one_minus_b1 = static_cast<float>(1.0 - a.beta1);
  s.b2 = static_cast<float>(a.beta2);
  s.one_minus_b2 = static_cast<float>(1.0 - a.beta2);
  s.neg_step_size = static_cast<float>(-(a.lr / (1.0 - std::pow(a.beta1, step))));
  s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(a.beta2, step)));
  s.eps = static_cast<float>(a.eps);
  if (a.grad_dtype == a.dtype && a.param_copy_out == nullptr) {
    IMPRINT_CUDA_DISPATCH(a.dtype, T, if constexpr (is_float_type<T>) adamw_typed<T, T, T>(a, s));
    return;
  }
  // Mixed precision (the op checked that the state is f32): any float grad, the copy in its dtype.
  const DType copy = a.param_copy_out != nullptr ? a.copy_dtype : DType::F32;
  IMPRINT_CUDA_FLOAT_DISPATCH(a.grad_dtype, "adamw_step", G,
                              IMPRINT_CUDA_FLOAT_DISPATCH(copy, "adamw_step", C, adamw_typed<float, G, C>(a, s)));
}

// ---- gradient-norm clipping --------------------------------------------------

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

IMPRINT_REGISTER_KERNEL(mse_loss_forward, CUDA, MseLossArgs, cuda::mse_loss_forward_cuda);
IMPRINT_REGISTER_KERNEL(mse_loss_backward, CUDA, MseLossArgs, cuda::mse_loss_backward_cuda);
IMPRINT_REGISTER_KERNEL(adamw_step, CUDA, AdamwStepArgs, cuda::adamw_step_cuda);
IMPRINT_REGISTER_KERNEL(clip_grad_norm, CUDA, ClipGradNormArgs, cuda::clip_grad_norm_cuda);

}  // namespace imprint
