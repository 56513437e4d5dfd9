// Plain descriptions of one kernel launch, shared by the CPU and CUDA backends.
// The device-independent op layer (csrc/ops) fills them after validating
// shapes; backends only compute. No pointers here own memory.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace imprint {

constexpr int kMaxDims = 8;

// C[b] = op(A[b]) · op(B[b]) for every batch index b, row-major, f32 accumulation.
// A batch index is decomposed over batch_shape; the *_batch_strides give each
// operand's element stride per batch dimension (0 where it is broadcast).
struct MatmulArgs {
  DType dtype;
  const void* a;
  const void* b;
  void* c;
  int64_t m, n, k;
  bool trans_a, trans_b;  // A stored [k, m] / B stored [n, k] when set
  int batch_ndim;
  int64_t batch;
  int64_t batch_shape[kMaxDims];
  int64_t a_batch_strides[kMaxDims];
  int64_t b_batch_strides[kMaxDims];
};

enum class BinaryOp : int { Add = 0, Mul = 1 };

// out[i] = a[ia] op b[ib] over a broadcast shape; strides are in elements, 0 = broadcast.
struct BinaryArgs {
  BinaryOp op;
  DType dtype;
  const void* a;
  const void* b;
  void* out;
  int ndim;
  int64_t numel;
  int64_t shape[kMaxDims];
  int64_t a_strides[kMaxDims];
  int64_t b_strides[kMaxDims];
};

// out[o] = sum of in over the reduced dimensions. The output (contiguous) has
// out_ndim dims; in_out_strides are the input strides of those dims, and the
// reduced sub-space is r_shape with input strides r_strides.
struct SumArgs {
  DType in_dtype;
  DType out_dtype;
  const void* in;
  void* out;
  int64_t out_numel;
  int out_ndim;
  int64_t out_shape[kMaxDims];
  int64_t in_out_strides[kMaxDims];
  int64_t r_numel;
  int r_ndim;
  int64_t r_shape[kMaxDims];
  int64_t r_strides[kMaxDims];
};

enum class RandomKind : int { Uniform = 0, Normal = 1 };

// Element i takes lane i%4 of Philox4x32-10(key = seed, counter = offset + i/4).
struct RandomArgs {
  RandomKind kind;
  DType dtype;
  void* out;
  int64_t numel;
  uint64_t seed;
  uint64_t offset;
  float a;  // uniform: low; normal: mean
  float b;  // uniform: high; normal: std
};

struct CastArgs {
  DType src_dtype;
  DType dst_dtype;
  const void* in;
  void* out;
  int64_t numel;
};

struct FillArgs {
  DType dtype;
  void* out;
  int64_t numel;
  double value;
};

}  // namespace imprint
