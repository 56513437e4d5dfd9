// linear_forward(x [..., in], weight [out, in], bias? [out]) → y [..., out]
// linear_backward(dy [..., out], x, weight; weightGrad, biasGrad)
//   → dx, then dweight and dbias when asked for.
#include "core/args/linear.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

struct LinearShapes {
  int64_t rows, in, out;
};

LinearShapes check_linear(const char* op, const Tensor& x, const Tensor& w, const Tensor* bias) {
  check_float(op, x);
  check_matches(op, x, "x", w, "weight");
  check_ndim(op, w, "weight", 2, "[out_features, in_features]");
  if (x.ndim() < 1 || x.shape.back() != w.shape[1]) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": x's last dimension must equal weight's in_features " +
                                       std::to_string(w.shape[1]) + " (x is " + x.describe() + ", weight is " +
                                       w.describe() + ")");
  }
  if (bias) {
    check_matches(op, x, "x", *bias, "bias");
    check_shape(op, *bias, "bias", {w.shape[0]});
  }
  const int64_t in = w.shape[1];
  return {in == 0 ? 0 : x.numel() / in, in, w.shape[0]};
}

Launch linear_forward(const OpInputs& inputs, const Attrs&) {
  const char* op = "linear_forward";
  const Tensor& x = input(op, inputs, 0, "x");
  const Tensor& w = input(op, inputs, 1, "weight");
  const Tensor* bias = optional_input(inputs, 2);
  const LinearShapes s = check_linear(op, x, w, bias);
  Shape y_shape = x.shape;
  y_shape.back() = s.out;
  Tensor y = Tensor::empty(y_shape, x.dtype, x.device);
  LinearForwardArgs args{x.dtype, x.data(), w.data(), bias ? bias->data() : nullptr, y.data(), s.rows, s.in, s.out};
  std::vector<Tensor> keep = {x, w};
  if (bias) keep.push_back(*bias);
  return kernel_launch("linear_forward", x.device, {y}, keep, args);
}

Launch linear_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "linear_backward";
  const Tensor& dy = input(op, inputs, 0, "dy");
  const Tensor& x = input(op, inputs, 1, "x");
  const Tensor& w = input(op, inputs, 2, "weight");
  const LinearShapes s = check_linear(op, x, w, nullptr);
  check_matches(op, x, "x", dy, "dy");
  Shape dy_shape = x.shape;
  dy_shape.back() = s.out;
  check_shape(op, dy, "dy", dy_shape);
  const bool weight_grad = attrs.get_bool(op, "weightGrad", true);
  const bool bias_grad = attrs.get_bool(op, "biasGrad", false);
  Tensor dx = Tensor::empty(x.shape, x.dtype, x.device);
  std::vector<Tensor> outputs = {dx};
  LinearBackwardArgs args{x.dtype, dy.data(), x.data(), w.data(), dx.data(), nullptr, nullptr, s.rows, s.in, s.out};
  linear_weight_grads(w, s.out, weight_grad, bias_grad, &args.dw, &args.dbias, outputs);
  return kernel_launch("linear_backward", x.device, outputs, {dy, x, w}, args);
}

}  // namespace

IMPRINT_REGISTER_OP(linear_forward, linear_forward);
IMPRINT_REGISTER_OP(linear_backward, linear_backward);

}  // namespace ops
}  // namespace imprint
