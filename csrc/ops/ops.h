// The device-independent op layer. Each function validates its inputs (shapes,
// dtypes, devices: errors name all three), allocates the output on the
// inputs' device, and returns a Launch whose `run` computes it. Validation and
// allocation happen on the caller's thread; `run` goes to the device queue.
#pragma once
#include <functional>
#include <vector>

#include "core/kernel_args.h"
#include "core/tensor.h"

namespace imprint {
namespace ops {

struct Launch {
  Tensor output;                // the result (the first one when there are several)
  std::vector<Tensor> outputs;  // all results, for ops that return several (nnOp)
  Device queue;                 // the device queue `run` must go to
  std::vector<Tensor> inputs;   // kept alive until `run` has finished
  std::function<void()> run;
};

Launch matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b);
Launch binary(BinaryOp op, const Tensor& a, const Tensor& b);
// Sums over `dims` (all dims when empty); negative dims count from the end.
Launch sum(const Tensor& a, const std::vector<int64_t>& dims, bool keep_dims);
Launch cast(const Tensor& a, DType dtype);
Launch to_device(const Tensor& a, const Device& device);
Launch random(RandomKind kind, const Shape& shape, DType dtype, const Device& device, uint64_t seed, uint64_t offset,
              float a, float b);
Launch full(const Shape& shape, DType dtype, const Device& device, double value);

// The same data under another shape with as many elements (shares the storage;
// tensors are immutable, so sharing is safe).
Tensor reshape(const Tensor& a, const Shape& shape);

// A CPU tensor of `dtype` made from host data of `src_dtype` (converted on the
// calling thread; `bytes` must match shape × src_dtype).
Tensor from_host(const void* data, size_t bytes, const Shape& shape, DType src_dtype, DType dtype);
// Copies a CPU tensor into `out` (nbytes of `dtype`), converting if the dtypes differ.
void to_host(const Tensor& t, DType dtype, void* out);

}  // namespace ops
}  // namespace imprint
