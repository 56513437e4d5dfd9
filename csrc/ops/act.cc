// Activation ops (plans):
//   silu_forward(x) → y                    silu_backward(dy, x) → dx
//   gelu_forward(x) → y  (exact erf form)  gelu_backward(dy, x) → dx
//   quick_gelu_forward(x) → y              quick_gelu_backward(dy, x) → dx
//   geglu_forward(x [..., 2F]) → y [..., F]; geglu_backward(dy [..., F], x) → dx [..., 2F]
//   softmax_forward(x; dim = -1) → y       softmax_backward(dy, y; dim = -1) → dx
//   scale_forward(x; factor) → x·factor    (its own backward: scale_forward(dy; factor))
#include <string>

#include "core/args/act.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

// dy of a backward op: same dtype, device and shape as the forward's tensor `ref`.
void check_grad(const char* op, const Tensor& ref, const char* ref_name, const Tensor& dy, const Shape& shape) {
  check_matches(op, ref, ref_name, dy, "dy");
  check_shape(op, dy, "dy", shape);
}

Launch elementwise_forward(const char* op, const OpInputs& inputs) {
  const Tensor& x = input(op, inputs, 0, "x");
  check_float(op, x, "x");
  Tensor y = Tensor::empty(x.shape, x.dtype, x.device);
  ActForwardArgs args{x.dtype, x.data(), y.data(), x.numel()};
  return kernel_launch(op, x.device, {y}, {x}, args);
}

Launch elementwise_backward(const char* op, const OpInputs& inputs) {
  const Tensor& dy = input(op, inputs, 0, "dy");
  const Tensor& x = input(op, inputs, 1, "x");
  check_float(op, x, "x");
  check_grad(op, x, "x", dy, x.shape);
  Tensor dx = Tensor::empty(x.shape, x.dtype, x.device);
  ActBackwardArgs args{x.dtype, dy.data(), x.data(), dx.data(), x.numel()};
  return kernel_launch(op, x.device, {dx}, {dy, x}, args);
}

Launch silu_forward(const OpInputs& inputs, const Attrs&) { return elementwise_forward("silu_forward", inputs); }
Launch silu_backward(const OpInputs& inputs, const Attrs&) { return elementwise_backward("silu_backward", inputs); }
Launch gelu_forward(const OpInputs& inputs, const Attrs&) { return elementwise_forward("gelu_forward", inputs); }
Launch gelu_backward(const OpInputs& inputs, const Attrs&) { return elementwise_backward("gelu_backward", inputs); }
Launch quick_gelu_forward(const OpInputs& inputs, const Attrs&) {
  return elementwise_forward("quick_gelu_forward", inputs);
}
Launch quick_gelu_backward(const OpInputs& inputs, const Attrs&) {
  return elementwise_backward("quick_gelu_backward", inputs);
}

// x [..., 2F]: returns F; the last dimension holds the value half, then the gate half.
int64_t geglu_features(const char* op, const Tensor& x) {
  check_float(op, x, "x");
  if (x.ndim() < 1 || x.shape.back() % 2 != 0) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": x must be [..., 2·features] (value half, then gate half) " +
                                       "with an even last dimension, got " + x.describe());
  }
  return x.shape.back() / 2;
}

Launch geglu_forward(const OpInputs& inputs, const Attrs&) {
  const char* op = "geglu_forward";
  const Tensor& x = input(op, inputs, 0, "x");
  const int64_t features = geglu_features(op, x);
  Shape y_shape = x.shape;
  y_shape.back() = features;
  Tensor y = Tensor::empty(y_shape, x.dtype, x.device);
  const int64_t rows = x.shape.back() == 0 ? 0 : x.numel() / x.shape.back();
  GegluForwardArgs args{x.dtype, x.data(), y.data(), rows, features};
  return kernel_launch(op, x.device, {y}, {x}, args);
}

Launch geglu_backward(const OpInputs& inputs, const Attrs&) {
  const char* op = "geglu_backward";
  const Tensor& dy = input(op, inputs, 0, "dy");
  const Tensor& x = input(op, inputs, 1, "x");
  const int64_t features = geglu_features(op, x);
  Shape dy_shape = x.shape;
  dy_shape.back() = features;
  check_grad(op, x, "x", dy, dy_shape);
  Tensor dx = Tensor::empty(x.shape, x.dtype, x.device);
  const int64_t rows = x.shape.back() == 0 ? 0 : x.numel() / x.shape.back();
  GegluBackwardArgs args{x.dtype, dy.data(), x.data(), dx.data(), rows, features};
  return kernel_launch(op, x.device, {dx}, {dy, x}, args);
}

// The `dim` attribute (default -1) as x viewed [outer, size, inner]. A 0-D
// tensor counts as one element along dim 0 (or -1), as in PyTorch.
struct SoftmaxAxis {
  int64_t outer = 1, size = 1, inner = 1;
};

SoftmaxAxis softmax_axis(const char* op, const Tensor& t, const char* name, const Attrs& attrs) {
  const int64_t dim = attrs.get_int(op, "dim", -1);
  const int64_t nd = t.ndim() == 0 ? 1 : t.ndim();
  if (dim < -nd || dim >= nd) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": dim " + std::to_string(dim) + " is out of range for " + name +
                                         " " + t.describe() + " (expected " + std::to_string(-nd) + " to " +
                                         std::to_string(nd - 1) + ")");
  }
  SoftmaxAxis axis;
  if (t.ndim() == 0) return axis;
  const int64_t d = dim < 0 ? dim + nd : dim;
  for (int64_t i = 0; i < nd; ++i) {
    if (i < d) axis.outer *= t.shape[i];
    else if (i > d) axis.inner *= t.shape[i];
  }
  axis.size = t.shape[d];
  return axis;
}

Launch softmax_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "softmax_forward";
  const Tensor& x = input(op, inputs, 0, "x");
  check_float(op, x, "x");
  const SoftmaxAxis axis = softmax_axis(op, x, "x", attrs);
  Tensor y = Tensor::empty(x.shape, x.dtype, x.device);
  SoftmaxForwardArgs args{x.dtype, x.data(), y.data(), axis.outer, axis.size, axis.inner};
  return kernel_launch(op, x.device, {y}, {x}, args);
}

Launch softmax_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "softmax_backward";
  const Tensor& dy = input(op, inputs, 0, "dy");
  const Tensor& y = input(op, inputs, 1, "y");
  check_float(op, y, "y");
  check_grad(op, y, "y", dy, y.shape);
  const SoftmaxAxis axis = softmax_axis(op, y, "y", attrs);
  Tensor dx = Tensor::empty(y.shape, y.dtype, y.device);
  SoftmaxBackwardArgs args{y.dtype, dy.data(), y.data(), dx.data(), axis.outer, axis.size, axis.inner};
  return kernel_launch(op, y.device, {dx}, {dy, y}, args);
}

Launch scale_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "scale_forward";
  const Tensor& x = input(op, inputs, 0, "x");
  check_float(op, x, "x");
  const double factor = attrs.get_number(op, "factor");
  Tensor y = Tensor::empty(x.shape, x.dtype, x.device);
  ScaleArgs args{x.dtype, x.data(), y.data(), x.numel(), factor};
  return kernel_launch(op, x.device, {y}, {x}, args);
}

}  // namespace

IMPRINT_REGISTER_OP(silu_forward, silu_forward);
IMPRINT_REGISTER_OP(silu_backward, silu_backward);
IMPRINT_REGISTER_OP(gelu_forward, gelu_forward);
IMPRINT_REGISTER_OP(gelu_backward, gelu_backward);
IMPRINT_REGISTER_OP(quick_gelu_forward, quick_gelu_forward);
IMPRINT_REGISTER_OP(quick_gelu_backward, quick_gelu_backward);
IMPRINT_REGISTER_OP(geglu_forward, geglu_forward);
IMPRINT_REGISTER_OP(geglu_backward, geglu_backward);
IMPRINT_REGISTER_OP(softmax_forward, softmax_forward);
IMPRINT_REGISTER_OP(softmax_backward, softmax_backward);
IMPRINT_REGISTER_OP(scale_forward, scale_forward);

}  // namespace ops
}  // namespace imprint
