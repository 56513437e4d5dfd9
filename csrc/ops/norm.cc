// group_norm_forward(x [N, C, *spatial], weight? [C], bias? [C]; groups, eps = 1e-5)
//   → y, mean [N, groups], rstd [N, groups]
// group_norm_silu_forward(x, weight?, bias?; groups, eps = 1e-5, keepNorm = 1)
//   → silu(y), then y when keepNorm (a training pass needs it for SiLU's
//   backward), mean, rstd: GroupNorm + SiLU in one kernel pass
// group_norm_backward(dy, x, mean, rstd, weight?; groups, weightGrad, biasGrad)
//   → dx, then dweight and dbias when asked for (default: when weight is given)
// layer_norm_forward(x [..., D], weight? [D], bias? [D]; eps = 1e-5) → y, mean [rows], rstd [rows]
// layer_norm_backward(dy, x, mean, rstd, weight?; weightGrad, biasGrad) → dx, dweight?, dbias?
// The saved statistics are always f32: a half-precision mean would lose the
// offset of large activations, and the backward pass needs it exact.
#include "core/args/norm.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

struct GroupNormShape {
  int64_t n, c, inner, groups;
};

GroupNormShape check_group_norm_x(const char* op, const Tensor& x, const Attrs& attrs) {
  check_float(op, x);
  if (x.ndim() < 2) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": x must be at least 2-D [N, C, *spatial], got " + x.describe());
  }
  const int64_t groups = attrs.get_int(op, "groups");
  const int64_t c = x.shape[1];
  if (groups < 1) {
    fail(ErrorCode::InvalidArgument,
         std::string(op) + ": groups must be a positive integer, got " + std::to_string(groups));
  }
  if (c % groups != 0) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": x's " + std::to_string(c) +
                                         " channels (dim 1) are not divisible by groups " + std::to_string(groups) +
                                         " (x is " + x.describe() + ")");
  }
  int64_t inner = 1;
  for (int i = 2; i < x.ndim(); ++i) inner *= x.shape[i];
  return {x.shape[0], c, inner, groups};
}

// The rows of a layer norm: every dimension but the last, flattened.
int64_t check_layer_norm_x(const char* op, const Tensor& x) {
  check_float(op, x);
  if (x.ndim() < 1) {
    fail(ErrorCode::ShapeMismatch,
         std::string(op) + ": x must have at least 1 dimension [..., D], got " + x.describe());
  }
  int64_t rows = 1;
  for (int i = 0; i + 1 < x.ndim(); ++i) rows *= x.shape[i];
  return rows;
}

double check_eps(const char* op, const Attrs& attrs) {
  const double eps = attrs.get_number(op, "eps", 1e-5);
  if (eps < 0) fail(ErrorCode::InvalidArgument, std::string(op) + ": eps must be >= 0, got " + std::to_string(eps));
  return eps;
}

// weight or bias: x's dtype and device, one value per normalised channel.
void check_affine(const char* op, const Tensor& x, const Tensor* p, const char* name, int64_t size) {
  if (!p) return;
  check_matches(op, x, "x", *p, name);
  check_shape(op, *p, name, {size});
}

// A saved statistic from the forward: f32 on x's device with the forward's shape.
void check_stat(const char* op, const Tensor& x, const Tensor& s, const char* name, const Shape& shape) {
  if (s.device != x.device) {
    fail(ErrorCode::DeviceMismatch, std::string(op) + ": " + name + " is " + s.describe() + " but x is " +
                                        x.describe() + "; put them on one device");
  }
  if (s.dtype != DType::F32) {
    fail(ErrorCode::DtypeMismatch, std::string(op) + ": " + name + " must be f32 (as the forward saves it), got " +
                                       s.describe());
  }
  check_shape(op, s, name, shape);
}

const void* data_or_null(const Tensor* t) { return t ? t->data() : nullptr; }

void check_dy(const char* op, const Tensor& x, const Tensor& dy) {
  check_matches(op, x, "x", dy, "dy");
  check_shape(op, dy, "dy", x.shape);
}

// The plain and the fused (SiLU) forward share the kernel: `silu` sets its act output.
Launch group_norm_forward_impl(const char* op, const OpInputs& inputs, const Attrs& attrs, bool silu) {
  const Tensor& x = input(op, inputs, 0, "x");
  const Tensor* weight = optional_input(inputs, 1);
  const Tensor* bias = optional_input(inputs, 2);
  const GroupNormShape s = check_group_norm_x(op, x, attrs);
  const double eps = check_eps(op, attrs);
  check_affine(op, x, weight, "weight", s.c);
  check_affine(op, x, bias, "bias", s.c);
  const bool keep_norm = !silu || attrs.get_bool(op, "keepNorm", true);
  Tensor y = keep_norm ? Tensor::empty(x.shape, x.dtype, x.device) : Tensor();
  Tensor act = silu ? Tensor::empty(x.shape, x.dtype, x.device) : Tensor();
  Tensor mean = Tensor::empty({s.n, s.groups}, DType::F32, x.device);
  Tensor rstd = Tensor::empty({s.n, s.groups}, DType::F32, x.device);
  GroupNormForwardArgs args{x.dtype,     x.data(),    data_or_null(weight), data_or_null(bias), keep_norm ? y.data() : nullptr,
                            mean.data(), rstd.data(), s.n, s.c, s.inner, s.groups, eps};
  args.act = silu ? act.data() : nullptr;
  std::vector<Tensor> keep = {x};
  if (weight) keep.push_back(*weight);
  if (bias) keep.push_back(*bias);
  std::vector<Tensor> outputs;
  if (silu) outputs.push_back(act);
  if (keep_norm) outputs.push_back(y);
  outputs.push_back(mean);
  outputs.push_back(rstd);
  return kernel_launch("group_norm_forward", x.device, std::move(outputs), keep, args);
}

Launch group_norm_forward(const OpInputs& inputs, const Attrs& attrs) {
  return group_norm_forward_impl("group_norm_forward", inputs, attrs, false);
}

Launch group_norm_silu_forward(const OpInputs& inputs, const Attrs& attrs) {
  return group_norm_forward_impl("group_norm_silu_forward", inputs, attrs, true);
}

Launch group_norm_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "group_norm_backward";
  const Tensor& dy = input(op, inputs, 0, "dy");
  const Tensor& x = input(op, inputs, 1, "x");
  const Tensor& mean = input(op, inputs, 2, "mean");
  const Tensor& rstd = input(op, inputs, 3, "rstd");
  const Tensor* weight = optional_input(inputs, 4);
  const GroupNormShape s = check_group_norm_x(op, x, attrs);
  check_dy(op, x, dy);
  check_stat(op, x, mean, "mean", {s.n, s.groups});
  check_stat(op, x, rstd, "rstd", {s.n, s.groups});
  check_affine(op, x, weight, "weight", s.c);
  // Without a weight these are still the gradients of a unit scale and zero shift.
  const bool weight_grad = attrs.get_bool(op, "weightGrad", weight != nullptr);
  const bool bias_grad = attrs.get_bool(op, "biasGrad", weight != nullptr);
  Tensor dx = Tensor::empty(x.shape, x.dtype, x.device);
  std::vector<Tensor> outputs = {dx};
  GroupNormBackwardArgs args{x.dtype,   dy.data(), x.data(), mean.data(), rstd.data(), data_or_null(weight),
                             dx.data(), nullptr,   nullptr,  s.n,         s.c,         s.inner, s.groups};
  if (weight_grad) {
    Tensor dw = Tensor::empty({s.c}, x.dtype, x.device);
    args.dweight = dw.data();
    outputs.push_back(dw);
  }
  if (bias_grad) {
    Tensor db = Tensor::empty({s.c}, x.dtype, x.device);
    args.dbias = db.data();
    outputs.push_back(db);
  }
  std::vector<Tensor> keep = {dy, x, mean, rstd};
  if (weight) keep.push_back(*weight);
  return kernel_launch("group_norm_backward", x.device, outputs, keep, args);
}

Launch layer_norm_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "layer_norm_forward";
  const Tensor& x = input(op, inputs, 0, "x");
  const Tensor* weight = optional_input(inputs, 1);
  const Tensor* bias = optional_input(inputs, 2);
  const int64_t rows = check_layer_norm_x(op, x);
  const int64_t d = x.shape.back();
  const double eps = check_eps(op, attrs);
  check_affine(op, x, weight, "weight", d);
  check_affine(op, x, bias, "bias", d);
  Tensor y = Tensor::empty(x.shape, x.dtype, x.device);
  Tensor mean = Tensor::empty({rows}, DType::F32, x.device);
  Tensor rstd = Tensor::empty({rows}, DType::F32, x.device);
  LayerNormForwardArgs args{x.dtype,     x.data(),    data_or_null(weight), data_or_null(bias), y.data(),
                            mean.data(), rstd.data(), rows, d, eps};
  std::vector<Tensor> keep = {x};
  if (weight) keep.push_back(*weight);
  if (bias) keep.push_back(*bias);
  return kernel_launch("layer_norm_forward", x.device, {y, mean, rstd}, keep, args);
}

Launch layer_norm_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "layer_norm_backward";
  const Tensor& dy = input(op, inputs, 0, "dy");
  const Tensor& x = input(op, inputs, 1, "x");
  const Tensor& mean = input(op, inputs, 2, "mean");
  const Tensor& rstd = input(op, inputs, 3, "rstd");
  const Tensor* weight = optional_input(inputs, 4);
  const int64_t rows = check_layer_norm_x(op, x);
  const int64_t d = x.shape.back();
  check_dy(op, x, dy);
  check_stat(op, x, mean, "mean", {rows});
  check_stat(op, x, rstd, "rstd", {rows});
  check_affine(op, x, weight, "weight", d);
  const bool weight_grad = attrs.get_bool(op, "weightGrad", weight != nullptr);
  const bool bias_grad = attrs.get_bool(op, "biasGrad", weight != nullptr);
  Tensor dx = Tensor::empty(x.shape, x.dtype, x.device);
  std::vector<Tensor> outputs = {dx};
  LayerNormBackwardArgs args{x.dtype,   dy.data(), x.data(), mean.data(), rstd.data(), data_or_null(weight),
                             dx.data(), nullptr,   nullptr,  rows,        d};
  if (weight_grad) {
    Tensor dw = Tensor::empty({d}, x.dtype, x.device);
    args.dweight = dw.data();
    outputs.push_back(dw);
  }
  if (bias_grad) {
    Tensor db = Tensor::empty({d}, x.dtype, x.device);
    args.dbias = db.data();
    outputs.push_back(db);
  }
  std::vector<Tensor> keep = {dy, x, mean, rstd};
  if (weight) keep.push_back(*weight);
  return kernel_launch("layer_norm_backward", x.device, outputs, keep, args);
}

}  // namespace

IMPRINT_REGISTER_OP(group_norm_forward, group_norm_forward);
IMPRINT_REGISTER_OP(group_norm_silu_forward, group_norm_silu_forward);
IMPRINT_REGISTER_OP(group_norm_backward, group_norm_backward);
IMPRINT_REGISTER_OP(layer_norm_forward, layer_norm_forward);
IMPRINT_REGISTER_OP(layer_norm_backward, layer_norm_backward);

}  // namespace ops
}  // namespace imprint
