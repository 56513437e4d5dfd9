// The concat ops' plans (kernels in csrc/cpu/concat.cc, cuda/concat.cu):
// concat_forward(t0, t1, ...; dim = 0) → out
// split_forward(x; dim = 0, sizes) → one tensor per size (concat's backward)
#include <string>
#include <vector>

#include "core/args/concat.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

// A dim in [-ndim, ndim) as a non-negative index.
int normalize_dim(const char* op, int64_t dim, int ndim) {
  if (dim < -ndim || dim >= ndim) {
    bad_attr(op, "dim " + std::to_string(dim) + " is out of range for " + std::to_string(ndim) +
                     "-D tensors (expected " + std::to_string(-ndim) + " to " + std::to_string(ndim - 1) + ")");
  }
  return static_cast<int>(dim < 0 ? dim + ndim : dim);
}

int64_t prod(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= s[i];
  return p;
}

Launch concat_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "concat_forward";
  if (inputs.empty()) bad_attr(op, "needs at least one tensor");
  const Tensor& first = input(op, inputs, 0, "tensors[0]");
  if (first.ndim() == 0) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": cannot concatenate 0-D tensors, got " + first.describe());
  }
  const int dim = normalize_dim(op, attrs.get_int(op, "dim", 0), first.ndim());
  Shape out_shape = first.shape;
  out_shape[dim] = 0;
  std::vector<Tensor> keep;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string name = "tensors[" + std::to_string(i) + "]";
    const Tensor& t = input(op, inputs, i, name.c_str());
    check_matches(op, first, "tensors[0]", t, name.c_str());
    bool fits = t.ndim() == first.ndim();
    for (int d = 0; fits && d < first.ndim(); ++d) fits = d == dim || t.shape[d] == first.shape[d];
    if (!fits) {
      fail(ErrorCode::ShapeMismatch, std::string(op) + ": " + name + " is " + t.describe() + " but tensors[0] is " +
                                         first.describe() + "; shapes must match except along dim " +
                                         std::to_string(dim));
    }
    out_shape[dim] += t.shape[dim];
    keep.push_back(t);
  }
  Tensor out = Tensor::empty(out_shape, first.dtype, first.device);
  const int64_t inner = prod(first.shape, dim + 1, first.shape.size());
  ConcatArgs args{dtype_size(first.dtype), {}, {}, out.data(), prod(first.shape, 0, dim), out_shape[dim] * inner};
  for (const Tensor& t : keep) {
    args.pieces.push_back(t.data());
    args.piece_cols.push_back(t.shape[dim] * inner);
  }
  return kernel_launch("concat_forward", first.device, {out}, keep, args);
}

Launch split_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "split_forward";
  const Tensor& x = input(op, inputs, 0, "x");
  if (x.ndim() == 0) fail(ErrorCode::ShapeMismatch, std::string(op) + ": cannot split a 0-D tensor, got " + x.describe());
  const int dim = normalize_dim(op, attrs.get_int(op, "dim", 0), x.ndim());
  const std::vector<int64_t> sizes = attrs.get_ints(op, "sizes");
  if (sizes.empty()) bad_attr(op, "sizes must list at least one size");
  const int64_t along = x.shape[dim];
  int64_t total = 0;
  bool too_many = false;  // compared without adding past `along`, so no overflow
  for (int64_t s : sizes) {
    if (s < 0) bad_attr(op, "sizes must be >= 0, got " + std::to_string(s));
    if (s > along - total) too_many = true;
    else total += s;
  }
  if (too_many || total != along) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": sizes " + shape_str(sizes) + " add up to " +
                                       (too_many ? "more than " + std::to_string(along) : std::to_string(total)) +
                                       " but x (" + x.describe() + ") has " + std::to_string(along) + " along dim " +
                                       std::to_string(dim));
  }
  const int64_t inner = prod(x.shape, dim + 1, x.shape.size());
  SplitArgs args{dtype_size(x.dtype), x.data(), {}, {}, prod(x.shape, 0, dim), x.shape[dim] * inner};
  std::vector<Tensor> outputs;
  for (int64_t s : sizes) {
    Shape piece_shape = x.shape;
    piece_shape[dim] = s;
    Tensor piece = Tensor::empty(piece_shape, x.dtype, x.device);
    args.pieces.push_back(piece.data());
    args.piece_cols.push_back(s * inner);
    outputs.push_back(piece);
  }
  return kernel_launch("split_forward", x.device, outputs, {x}, args);
}

}  // namespace

IMPRINT_REGISTER_OP(concat_forward, concat_forward);
IMPRINT_REGISTER_OP(split_forward, split_forward);

}  // namespace ops
}  // namespace imprint
