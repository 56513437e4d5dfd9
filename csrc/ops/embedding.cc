// The embedding ops' plans (kernels in csrc/cpu/embedding.cc, cuda/embedding.cu):
// embedding_forward(ids i32|i64 [...], table [V, D]) → out [..., D]
// embedding_backward(dy [..., D], ids [...], rowMask? u8 [V]; vocab) → dtable [V, D]
// timestep_embedding_forward(timesteps [N]; dim, flipSinToCos = true, freqShift = 0,
//   maxPeriod = 10000, scale = 1) → [N, dim]
#include <string>

#include "core/args/embedding.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

void check_ids(const char* op, const Tensor& ids) {
  if (ids.dtype != DType::I32 && ids.dtype != DType::I64) {
    fail(ErrorCode::DtypeMismatch, std::string(op) + ": ids must be i32 or i64, got " + ids.describe());
  }
}

// ---- embedding -------------------------------------------------------------

Launch embedding_forward(const OpInputs& inputs, const Attrs&) {
  const char* op = "embedding_forward";
  const Tensor& ids = input(op, inputs, 0, "ids");
  const Tensor& table = input(op, inputs, 1, "table");
  check_ids(op, ids);
  check_float(op, table);
  check_ndim(op, table, "table", 2, "[vocab, dim]");
  check_device(op, table, "table", ids, "ids");
  Shape out_shape = ids.shape;
  out_shape.push_back(table.shape[1]);
  Tensor out = Tensor::empty(out_shape, table.dtype, table.device);
  EmbeddingForwardArgs args{table.dtype, ids.dtype, ids.data(),    table.data(),
                            out.data(),  ids.numel(), table.shape[0], table.shape[1]};
  return kernel_launch("embedding_forward", table.device, {out}, {ids, table}, args);
}

Launch embedding_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "embedding_backward";
  const Tensor& dy = input(op, inputs, 0, "dy");
  const Tensor& ids = input(op, inputs, 1, "ids");
  const Tensor* row_mask = optional_input(inputs, 2);
  check_float(op, dy);
  check_ids(op, ids);
  check_device(op, dy, "dy", ids, "ids");
  const int64_t vocab = attrs.get_int(op, "vocab");
  if (vocab < 0) bad_attr(op, "vocab must be >= 0, got " + std::to_string(vocab));
  bool dy_fits = dy.ndim() == ids.ndim() + 1;
  for (int d = 0; dy_fits && d < ids.ndim(); ++d) dy_fits = dy.shape[d] == ids.shape[d];
  if (!dy_fits) {
    Shape expected = ids.shape;
    expected.push_back(0);
    std::string want = shape_str(expected);
    want = want.substr(0, want.size() - 2) + "dim]";  // "[2, 77, dim]"
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": dy must have shape ids' shape + [dim] = " + want + ", got " +
                                       dy.describe() + " (ids are " + ids.describe() + ")");
  }
  if (row_mask) {
    check_device(op, dy, "dy", *row_mask, "rowMask");
    if (row_mask->dtype != DType::U8) {
      fail(ErrorCode::DtypeMismatch, std::string(op) + ": rowMask must be u8 (1 = the row gets a gradient), got " +
                                         row_mask->describe());
    }
    check_shape(op, *row_mask, "rowMask", {vocab});
  }
  const int64_t dim = dy.shape.back();
  Tensor dtable = Tensor::empty({vocab, dim}, dy.dtype, dy.device);
  EmbeddingBackwardArgs args{dy.dtype, ids.dtype, dy.data(), ids.data(),
                             row_mask ? static_cast<const uint8_t*>(row_mask->data()) : nullptr,
                             dtable.data(), ids.numel(), vocab, dim};
  std::vector<Tensor> keep = {dy, ids};
  if (row_mask) keep.push_back(*row_mask);
  return kernel_launch("embedding_backward", dy.device, {dtable}, keep, args);
}

// ---- timestep embedding ----------------------------------------------------

Launch timestep_embedding_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "timestep_embedding_forward";
  const Tensor& t = input(op, inputs, 0, "timesteps");
  check_float(op, t);
  check_ndim(op, t, "timesteps", 1, "[N]");
  const int64_t dim = attrs.get_int(op, "dim");
  if (dim < 1) bad_attr(op, "dim must be >= 1, got " + std::to_string(dim));
  const bool flip = attrs.get_bool(op, "flipSinToCos", true);
  const double freq_shift = attrs.get_number(op, "freqShift", 0.0);
  const double max_period = attrs.get_number(op, "maxPeriod", 10000.0);
  const double scale = attrs.get_number(op, "scale", 1.0);
  if (!(max_period > 0)) bad_attr(op, "maxPeriod must be > 0, got " + std::to_string(max_period));
  // diffusers divides by (dim / 2 - freqShift): zero would make every frequency NaN.
  if (dim / 2 > 0 && static_cast<double>(dim / 2) - freq_shift == 0) {
    bad_attr(op, "freqShift " + std::to_string(freq_shift) + " equals dim / 2 = " + std::to_string(dim / 2) +
                     ", which divides by zero; use a larger dim");
  }
  Tensor out = Tensor::empty({t.shape[0], dim}, t.dtype, t.device);
  TimestepEmbeddingArgs args{t.dtype, t.data(), out.data(), t.shape[0], dim, flip, freq_shift, max_period, scale};
  return kernel_launch("timestep_embedding_forward", t.device, {out}, {t}, args);
}

}  // namespace

IMPRINT_REGISTER_OP(embedding_forward, embedding_forward);
IMPRINT_REGISTER_OP(embedding_backward, embedding_backward);
IMPRINT_REGISTER_OP(timestep_embedding_forward, timestep_embedding_forward);

}  // namespace ops
}  // namespace imprint
