#include "core/tensor.h"

#include <sstream>

#include "core/error.h"
#include "core/kernel_args.h"

namespace imprint {

int64_t shape_numel(const Shape& shape, DType dtype) {
  if (shape.size() > static_cast<size_t>(kMaxDims)) {
    fail(ErrorCode::InvalidArgument, "shape " + shape_str(shape) + " has " + std::to_string(shape.size()) +
                                         " dimensions; at most " + std::to_string(kMaxDims) + " are supported");
  }
  // Keep byte sizes below 2^53 so JavaScript numbers describe them exactly.
  const int64_t kMaxBytes = int64_t{1} << 53;
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(ErrorCode::InvalidArgument, "shape " + shape_str(shape) + " has a negative dimension");
    if (d != 0 && n > kMaxBytes / d / static_cast<int64_t>(dtype_size(dtype))) {
      fail(ErrorCode::OutOfMemory, "shape " + shape_str(shape) + " of " + dtype_name(dtype) +
                                       " is too large to address (over 2^53 bytes)");
    }
    n *= d;
  }
  return n;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, const Device& device) {
  int64_t n = shape_numel(shape, dtype);
  Tensor t;
  t.shape = shape;
  t.dtype = dtype;
  t.device = device;
  t.storage = Storage::allocate(device, static_cast<size_t>(n) * dtype_size(dtype));
  return t;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string Tensor::describe() const {
  return std::string(dtype_name(dtype)) + shape_str(shape) + " on " + device.str();
}

}  // namespace imprint
