// A dense, contiguous, row-major tensor: shape, dtype and device over a shared
// Storage. Copies are cheap (they share the storage).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/memory.h"

namespace imprint {

using Shape = std::vector<int64_t>;

// Product of the dims; throws INVALID_ARGUMENT for negative dims, more than
// kMaxDims dims, or a size that does not fit in memory addressing.
int64_t shape_numel(const Shape& shape, DType dtype);
std::string shape_str(const Shape& shape);
Shape contiguous_strides(const Shape& shape);

struct Tensor {
  std::shared_ptr<Storage> storage;
  Shape shape;
  DType dtype = DType::F32;
  Device device;

  static Tensor empty(const Shape& shape, DType dtype, const Device& device);

  int64_t numel() const;
  int ndim() const { return static_cast<int>(shape.size()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  void* data() const { return storage ? storage->data() : nullptr; }
  // "f32[2, 3] on cpu", for error messages.
  std::string describe() const;
};

}  // namespace imprint
