// Launch descriptions for the misc ops (embedding, timestep embedding,
// nearest resize, concat/split, MSE loss, AdamW, gradient clipping), shared by CPU and CUDA
// kernels. The plans in csrc/ops/misc.cc validate shapes and fill these.
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/kernel_args.h"

namespace imprint {

// out[i, :] = table[ids[i], :]. Ids are checked against vocab by the kernel
// (they are data), which throws naming the first bad one.
struct EmbeddingForwardArgs {
  DType dtype;       // table and out
  DType id_dtype;    // I32 or I64
  const void* ids;   // [n]
  const void* table; // [vocab, dim]
  void* out;         // [n, dim]
  int64_t n, vocab, dim;
};

// dtable[v, :] = Σ dy[i, :] over ids[i] == v, for rows with row_mask[v] != 0
// (all rows when row_mask is null); every other row is exactly 0.
struct EmbeddingBackwardArgs {
  DType dtype;
  DType id_dtype;
  const void* dy;           // [n, dim]
  const void* ids;          // [n]
  const uint8_t* row_mask;  // [vocab] or nullptr
  void* dtable;             // [vocab, dim]
  int64_t n, vocab, dim;
};

// diffusers' get_timestep_embedding: freq_j = exp(-ln(max_period)·j / (half - freq_shift)),
// out = [sin(scale·t·freq), cos(scale·t·freq)] (halves swapped when flip_sin_to_cos),
// zero-padded by one column when dim is odd.
struct TimestepEmbeddingArgs {
  DType dtype;
  const void* timesteps;  // [n]
  void* out;              // [n, dim]
  int64_t n, dim;
  bool flip_sin_to_cos;
  double freq_shift, max_period, scale;
};

// Pieces laid side by side along one dim. Seen as 2-D: every tensor is
// [outer, cols] with cols = size along the dim × the trailing dims' product,
// so piece i occupies columns [offset_i, offset_i + piece_cols[i]) of whole.
// Copies are by element size: concat and split move any dtype.
struct ConcatArgs {
  size_t elem_size;
  std::vector<const void*> pieces;
  std::vector<int64_t> piece_cols;
  void* whole;
  int64_t outer, total_cols;
};

struct SplitArgs {
  size_t elem_size;
  const void* whole;
  std::vector<void*> pieces;
  std::vector<int64_t> piece_cols;
  int64_t outer, total_cols;
};

// Masked mean squared error. The mask is broadcast over pred's shape; dims
// are coalesced by the plan, so mask_strides (0 = broadcast) over `shape`
// usually has 1 to 3 dims. denominator = Σ mask × broadcast_factor, where
// broadcast_factor = numel / mask_numel (each mask element is repeated that
// many times), or numel when there is no mask.
struct MseLossArgs {
  DType dtype;
  const void* pred;    // [numel]
  const void* target;  // [numel]
  const void* mask;    // mask_numel elements, or nullptr
  void* out;           // forward: the loss, shape []; backward: dpred [numel]
  int64_t numel;
  int64_t mask_numel;
  int ndim;
  int64_t shape[kMaxDims];
  int64_t mask_strides[kMaxDims];
  double grad_scale;   // backward only: d loss
};

// One torch.optim.AdamW step (decoupled weight decay, bias-corrected moments)
// into new tensors. Mixed precision: the state (param, moments) is f32, the
// grad may be f16/bf16, and param_copy_out (when set) gets the updated param
// rounded to copy_dtype, the model's low-precision copy of its f32 master.
struct AdamwStepArgs {
  DType dtype;       // param, moments and their outputs
  DType grad_dtype;  // == dtype unless dtype is f32
  DType copy_dtype;  // of param_copy_out
  const void* param;
  const void* grad;
  const void* exp_avg;
  const void* exp_avg_sq;
  void* param_out;
  void* exp_avg_out;
  void* exp_avg_sq_out;
  void* param_copy_out;  // nullptr: no copy
  int64_t numel;
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;
};

// torch.nn.utils.clip_grad_norm_ over several tensors: total = ‖all grads‖_p
// (in double), each grad scaled by min(1, max_norm / (total + 1e-6)).
struct ClipGradNormArgs {
  DType dtype;
  std::vector<const void*> grads;
  std::vector<void*> grads_out;
  std::vector<int64_t> numels;
  void* total_norm;  // shape []
  double max_norm;
  double norm_type;  // > 0, or +infinity
};

// Nearest-neighbour resize to any size, as F.interpolate(mode='nearest'):
// output index o reads input index min(floor(o·(in/out)), in − 1), the scale
// a float as PyTorch computes it.
// Forward: src [planes, in_h, in_w] → dst [planes, out_h, out_w].
// Backward: src (dy) [planes, out_h, out_w] → dst (dx) [planes, in_h, in_w],
// each dx entry the sum of the dy entries that read it.
struct UpsampleNearestArgs {
  DType dtype;
  const void* src;
  void* dst;
  int64_t planes, in_h, in_w, out_h, out_w;
};

}  // namespace imprint
