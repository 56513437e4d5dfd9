// The misc ops' plans (kernels in csrc/cpu/misc_*.cc):
// embedding_forward(ids i32|i64 [...], table [V, D]) → out [..., D]
// embedding_backward(dy [..., D], ids [...], rowMask? u8 [V]; vocab) → dtable [V, D]
// timestep_embedding_forward(timesteps [N]; dim, flipSinToCos = true, freqShift = 0,
//   maxPeriod = 10000, scale = 1) → [N, dim]
// upsample_nearest_forward(x [N, C, H, W]; outH, outW) → y [N, C, outH, outW]
// upsample_nearest_backward(dy [N, C, outH, outW]; inH, inW) → dx [N, C, inH, inW]
//   (F.interpolate(mode='nearest', size=...) and its backward; 2x runs the
//   upsample_nearest2x kernels)
// concat_forward(t0, t1, ...; dim = 0) → out
// split_forward(x; dim = 0, sizes) → one tensor per size (concat's backward)
// mse_loss_forward(pred, target, mask?) → loss []
// mse_loss_backward(pred, target, mask?; gradScale = 1) → dpred
// adamw_step(param, grad, expAvg, expAvgSq, copy?; lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8,
//   weightDecay = 1e-2, step) → param, expAvg, expAvgSq (new tensors), then the new copy
//   when copy is given: mixed precision, with param an f32 master, grad in any float
//   dtype and copy the model's f16/bf16 weight (only its dtype is read)
// clip_grad_norm(g0, g1, ...; maxNorm, normType = 2) → totalNorm [], then the clipped grads
#include <cmath>
#include <limits>
#include <string>

#include "core/args/conv.h"
#include "core/args/misc.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

void check_device(const char* op, const Tensor& ref, const char* ref_name, const Tensor& t, const char* name) {
  if (ref.device != t.device) {
    fail(ErrorCode::DeviceMismatch, std::string(op) + ": " + name + " is " + t.describe() + " but " + ref_name +
                                        " is " + ref.describe() + "; put them on one device");
  }
}

void check_ids(const char* op, const Tensor& ids) {
  if (ids.dtype != DType::I32 && ids.dtype != DType::I64) {
    fail(ErrorCode::DtypeMismatch, std::string(op) + ": ids must be i32 or i64, got " + ids.describe());
  }
}

[[noreturn]] void bad_attr(const char* op, const std::string& what) {
  fail(ErrorCode::InvalidArgument, std::string(op) + ": " + what);
}

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

// ---- nearest resize --------------------------------------------------------

// A resize side from attrs: 1 to 65536 (larger would be a typo, not an image).
int64_t side_attr(const char* op, const Attrs& attrs, const char* name) {
  const int64_t v = attrs.get_int(op, name);
  if (v < 1 || v > 65536) bad_attr(op, std::string(name) + " must be in [1, 65536], got " + std::to_string(v));
  return v;
}

Launch upsample_nearest_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "upsample_nearest_forward";
  const Tensor& x = input(op, inputs, 0, "x");
  check_float(op, x);
  check_ndim(op, x, "x", 4, "[N, C, H, W]");
  const int64_t oh = side_attr(op, attrs, "outH"), ow = side_attr(op, attrs, "outW");
  if (x.shape[2] < 1 || x.shape[3] < 1) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": x must have a positive height and width, got " + x.describe());
  }
  Tensor y = Tensor::empty({x.shape[0], x.shape[1], oh, ow}, x.dtype, x.device);
  const int64_t planes = x.shape[0] * x.shape[1];
  if (oh == 2 * x.shape[2] && ow == 2 * x.shape[3]) {
    UpsampleNearest2xArgs args{x.dtype, x.data(), y.data(), planes, x.shape[2], x.shape[3]};
    return kernel_launch("upsample_nearest2x_forward", x.device, {y}, {x}, args);
  }
  UpsampleNearestArgs args{x.dtype, x.data(), y.data(), planes, x.shape[2], x.shape[3], oh, ow};
  return kernel_launch("upsample_nearest_forward", x.device, {y}, {x}, args);
}

Launch upsample_nearest_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "upsample_nearest_backward";
  const Tensor& dy = input(op, inputs, 0, "dy");
  check_float(op, dy);
  check_ndim(op, dy, "dy", 4, "[N, C, outH, outW]");
  const int64_t ih = side_attr(op, attrs, "inH"), iw = side_attr(op, attrs, "inW");
  if (dy.shape[2] < 1 || dy.shape[3] < 1) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": dy must have a positive height and width, got " + dy.describe());
  }
  Tensor dx = Tensor::empty({dy.shape[0], dy.shape[1], ih, iw}, dy.dtype, dy.device);
  const int64_t planes = dy.shape[0] * dy.shape[1];
  if (dy.shape[2] == 2 * ih && dy.shape[3] == 2 * iw) {
    UpsampleNearest2xArgs args{dy.dtype, dy.data(), dx.data(), planes, ih, iw};
    return kernel_launch("upsample_nearest2x_backward", dy.device, {dx}, {dy}, args);
  }
  UpsampleNearestArgs args{dy.dtype, dy.data(), dx.data(), planes, ih, iw, dy.shape[2], dy.shape[3]};
  return kernel_launch("upsample_nearest_backward", dy.device, {dx}, {dy}, args);
}

// ---- concat / split --------------------------------------------------------

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

// ---- MSE loss --------------------------------------------------------------

// Validates pred/target/mask and describes the mask's broadcast with as few
// dims as possible: size-1 dims of pred are dropped and neighbours that walk
// the mask alike (both broadcast, or contiguous) are merged.
MseLossArgs check_mse(const char* op, const Tensor& pred, const Tensor& target, const Tensor* mask) {
  check_float(op, pred);
  check_matches(op, pred, "pred", target, "target");
  check_shape(op, target, "target", pred.shape);
  MseLossArgs args{};
  args.dtype = pred.dtype;
  args.pred = pred.data();
  args.target = target.data();
  args.numel = pred.numel();
  args.mask_numel = args.numel;
  args.ndim = 1;
  args.shape[0] = args.numel;
  args.mask_strides[0] = 1;
  args.grad_scale = 1.0;
  if (!mask) return args;
  check_matches(op, pred, "pred", *mask, "mask");
  const int nd = pred.ndim(), lead = nd - mask->ndim();
  bool fits = lead >= 0;
  for (int d = 0; fits && d < mask->ndim(); ++d) fits = mask->shape[d] == 1 || mask->shape[d] == pred.shape[lead + d];
  if (!fits) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": mask " + mask->describe() + " does not broadcast to pred's shape " +
                                       shape_str(pred.shape) + " (each mask dim must be 1 or equal pred's)");
  }
  args.mask = mask->data();
  args.mask_numel = mask->numel();
  const Shape mask_strides = contiguous_strides(mask->shape);
  int n = 0;
  for (int d = 0; d < nd; ++d) {
    const int64_t size = pred.shape[d];
    if (size == 1) continue;
    const int md = d - lead;
    const int64_t stride = md < 0 || mask->shape[md] == 1 ? 0 : mask_strides[md];
    if (n > 0 && args.mask_strides[n - 1] == stride * size) {
      args.shape[n - 1] *= size;
      args.mask_strides[n - 1] = stride;
    } else {
      args.shape[n] = size;
      args.mask_strides[n] = stride;
      ++n;
    }
  }
  if (n == 0) {  // a single element
    args.shape[0] = 1;
    args.mask_strides[0] = 0;
    n = 1;
  }
  args.ndim = n;
  return args;
}

Launch mse_loss_forward(const OpInputs& inputs, const Attrs&) {
  const char* op = "mse_loss_forward";
  const Tensor& pred = input(op, inputs, 0, "pred");
  const Tensor& target = input(op, inputs, 1, "target");
  const Tensor* mask = optional_input(inputs, 2);
  MseLossArgs args = check_mse(op, pred, target, mask);
  Tensor loss = Tensor::empty({}, pred.dtype, pred.device);
  args.out = loss.data();
  std::vector<Tensor> keep = {pred, target};
  if (mask) keep.push_back(*mask);
  return kernel_launch("mse_loss_forward", pred.device, {loss}, keep, args);
}

Launch mse_loss_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "mse_loss_backward";
  const Tensor& pred = input(op, inputs, 0, "pred");
  const Tensor& target = input(op, inputs, 1, "target");
  const Tensor* mask = optional_input(inputs, 2);
  MseLossArgs args = check_mse(op, pred, target, mask);
  args.grad_scale = attrs.get_number(op, "gradScale", 1.0);
  Tensor dpred = Tensor::empty(pred.shape, pred.dtype, pred.device);
  args.out = dpred.data();
  std::vector<Tensor> keep = {pred, target};
  if (mask) keep.push_back(*mask);
  return kernel_launch("mse_loss_backward", pred.device, {dpred}, keep, args);
}

// ---- optimiser -------------------------------------------------------------

Launch adamw_step(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "adamw_step";
  const Tensor& param = input(op, inputs, 0, "param");
  const Tensor& grad = input(op, inputs, 1, "grad");
  const Tensor& exp_avg = input(op, inputs, 2, "expAvg");
  const Tensor& exp_avg_sq = input(op, inputs, 3, "expAvgSq");
  const Tensor* copy = optional_input(inputs, 4);
  check_float(op, param);
  const std::pair<const Tensor*, const char*> moments[] = {{&exp_avg, "expAvg"}, {&exp_avg_sq, "expAvgSq"}};
  for (const auto& o : moments) {
    check_matches(op, param, "param", *o.first, o.second);
    check_shape(op, *o.first, o.second, param.shape);
  }
  // A grad or copy in another precision than the state: mixed precision, which keeps an f32 master.
  for (const Tensor* t : {&grad, copy}) {
    if (t == nullptr) continue;
    const char* name = t == &grad ? "grad" : "copy";
    check_device(op, param, "param", *t, name);
    check_float(op, *t, name);
    check_shape(op, *t, name, param.shape);
    if ((t == copy || t->dtype != param.dtype) && param.dtype != DType::F32) {
      fail(ErrorCode::DtypeMismatch, std::string(op) + ": " + name + " is " + t->describe() + " but param is " +
                                         param.describe() + "; mixed precision needs an f32 param (the master copy)");
    }
  }
  AdamwStepArgs args{};
  args.lr = attrs.get_number(op, "lr");
  args.beta1 = attrs.get_number(op, "beta1", 0.9);
  args.beta2 = attrs.get_number(op, "beta2", 0.999);
  args.eps = attrs.get_number(op, "eps", 1e-8);
  args.weight_decay = attrs.get_number(op, "weightDecay", 1e-2);
  args.step = attrs.get_int(op, "step");
  // The ranges torch.optim.AdamW accepts.
  if (args.lr < 0) bad_attr(op, "lr must be >= 0, got " + std::to_string(args.lr));
  if (args.beta1 < 0 || args.beta1 >= 1) bad_attr(op, "beta1 must be in [0, 1), got " + std::to_string(args.beta1));
  if (args.beta2 < 0 || args.beta2 >= 1) bad_attr(op, "beta2 must be in [0, 1), got " + std::to_string(args.beta2));
  if (args.eps < 0) bad_attr(op, "eps must be >= 0, got " + std::to_string(args.eps));
  if (args.weight_decay < 0) bad_attr(op, "weightDecay must be >= 0, got " + std::to_string(args.weight_decay));
  if (args.step < 1) bad_attr(op, "step must be >= 1 (the count of steps including this one), got " + std::to_string(args.step));
  Tensor param_out = Tensor::empty(param.shape, param.dtype, param.device);
  Tensor exp_avg_out = Tensor::empty(param.shape, param.dtype, param.device);
  Tensor exp_avg_sq_out = Tensor::empty(param.shape, param.dtype, param.device);
  args.dtype = param.dtype;
  args.grad_dtype = grad.dtype;
  args.param = param.data();
  args.grad = grad.data();
  args.exp_avg = exp_avg.data();
  args.exp_avg_sq = exp_avg_sq.data();
  args.param_out = param_out.data();
  args.exp_avg_out = exp_avg_out.data();
  args.exp_avg_sq_out = exp_avg_sq_out.data();
  args.numel = param.numel();
  if (copy == nullptr) {
    return kernel_launch("adamw_step", param.device, {param_out, exp_avg_out, exp_avg_sq_out},
                         {param, grad, exp_avg, exp_avg_sq}, args);
  }
  Tensor copy_out = Tensor::empty(param.shape, copy->dtype, param.device);
  args.copy_dtype = copy->dtype;
  args.param_copy_out = copy_out.data();
  return kernel_launch("adamw_step", param.device, {param_out, exp_avg_out, exp_avg_sq_out, copy_out},
                       {param, grad, exp_avg, exp_avg_sq}, args);
}

Launch clip_grad_norm(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "clip_grad_norm";
  ClipGradNormArgs args{};
  args.max_norm = attrs.get_number(op, "maxNorm");
  if (args.max_norm < 0) bad_attr(op, "maxNorm must be >= 0, got " + std::to_string(args.max_norm));
  // get_number refuses infinity, which is a valid norm type (the max-abs norm).
  auto nt = attrs.numbers.find("normType");
  if (nt != attrs.numbers.end() && std::isinf(nt->second) && nt->second > 0) {
    args.norm_type = std::numeric_limits<double>::infinity();
  } else {
    args.norm_type = attrs.get_number(op, "normType", 2.0);
    if (!(args.norm_type > 0)) bad_attr(op, "normType must be > 0 or Infinity, got " + std::to_string(args.norm_type));
  }
  std::vector<Tensor> keep;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string name = "grads[" + std::to_string(i) + "]";
    const Tensor& g = input(op, inputs, i, name.c_str());
    if (i == 0) check_float(op, g);
    else check_matches(op, keep.front(), "grads[0]", g, name.c_str());
    keep.push_back(g);
  }
  // torch returns a 0-D f32 zero for no gradients.
  const DType dtype = keep.empty() ? DType::F32 : keep.front().dtype;
  const Device device = keep.empty() ? Device() : keep.front().device;
  Tensor total = Tensor::empty({}, dtype, device);
  args.dtype = dtype;
  args.total_norm = total.data();
  std::vector<Tensor> outputs = {total};
  for (const Tensor& g : keep) {
    Tensor clipped = Tensor::empty(g.shape, g.dtype, g.device);
    args.grads.push_back(g.data());
    args.grads_out.push_back(clipped.data());
    args.numels.push_back(g.numel());
    outputs.push_back(clipped);
  }
  return kernel_launch("clip_grad_norm", device, outputs, keep, args);
}

}  // namespace

IMPRINT_REGISTER_OP(embedding_forward, embedding_forward);
IMPRINT_REGISTER_OP(embedding_backward, embedding_backward);
IMPRINT_REGISTER_OP(timestep_embedding_forward, timestep_embedding_forward);
IMPRINT_REGISTER_OP(upsample_nearest_forward, upsample_nearest_forward);
IMPRINT_REGISTER_OP(upsample_nearest_backward, upsample_nearest_backward);
IMPRINT_REGISTER_OP(concat_forward, concat_forward);
IMPRINT_REGISTER_OP(split_forward, split_forward);
IMPRINT_REGISTER_OP(mse_loss_forward, mse_loss_forward);
IMPRINT_REGISTER_OP(mse_loss_backward, mse_loss_backward);
IMPRINT_REGISTER_OP(adamw_step, adamw_step);
IMPRINT_REGISTER_OP(clip_grad_norm, clip_grad_norm);

}  // namespace ops
}  // namespace imprint
