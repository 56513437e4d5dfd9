// conv2d_forward(x [N, Cin, H, W], weight [Cout, Cin, kh, kw], bias? [Cout];
//                stride = 1, padding = [0, 0, 0, 0] as [top, bottom, left, right])
//   → y [N, Cout, Ho, Wo]
// conv2d_backward(dy [N, Cout, Ho, Wo], x, weight; stride, padding,
//                 inputGrad = true, weightGrad = true, biasGrad = false)
//   → dx, dweight and dbias, each when asked for, in that order (inputGrad
//   false: x is a constant, e.g. features fed to a trained convolution).
#include <climits>

#include "core/args/conv.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

std::string list_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

Conv2dGeometry check_conv(const char* op, const Tensor& x, const Tensor& w, const Tensor* bias, const Attrs& attrs) {
  check_float(op, x);
  check_ndim(op, x, "x", 4, "[N, C, H, W]");
  check_matches(op, x, "x", w, "weight");
  check_ndim(op, w, "weight", 4, "[out_channels, in_channels, kh, kw]");
  if (w.shape[1] != x.shape[1]) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": weight's in_channels (dim 1) must equal x's channels " +
                                       std::to_string(x.shape[1]) + " (x is " + x.describe() + ", weight is " +
                                       w.describe() + ")");
  }
  if (w.shape[2] < 1 || w.shape[3] < 1) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": weight's kernel must be at least 1x1, got " + w.describe());
  }
  if (bias) {
    check_matches(op, x, "x", *bias, "bias");
    check_shape(op, *bias, "bias", {w.shape[0]});
  }
  const int64_t stride = attrs.get_int(op, "stride", 1);
  if (stride < 1) {
    fail(ErrorCode::InvalidArgument,
         std::string(op) + ": stride must be a positive integer, got " + std::to_string(stride));
  }
  const std::vector<int64_t> pad = attrs.get_ints(op, "padding", {0, 0, 0, 0});
  bool pad_ok = pad.size() == 4;
  for (int64_t p : pad) pad_ok = pad_ok && p >= 0;
  if (!pad_ok) {
    fail(ErrorCode::InvalidArgument, std::string(op) +
                                         ": padding must be 4 non-negative integers [top, bottom, left, right], got " +
                                         list_str(pad));
  }
  Conv2dGeometry g{};
  g.n = x.shape[0];
  g.cin = x.shape[1];
  g.h = x.shape[2];
  g.w = x.shape[3];
  g.cout = w.shape[0];
  g.kh = w.shape[2];
  g.kw = w.shape[3];
  g.stride = stride;
  g.pad_top = pad[0];
  g.pad_bottom = pad[1];
  g.pad_left = pad[2];
  g.pad_right = pad[3];
  // Attribute integers stay below 2^53, so these sums cannot overflow.
  const int64_t padded_h = g.h + g.pad_top + g.pad_bottom, padded_w = g.w + g.pad_left + g.pad_right;
  if (padded_h < g.kh || padded_w < g.kw) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": the padded input is " + std::to_string(padded_h) + "x" +
                                       std::to_string(padded_w) + " (x is " + x.describe() + ", padding " +
                                       list_str(pad) + ") but the kernel is " + std::to_string(g.kh) + "x" +
                                       std::to_string(g.kw) + " (weight is " + w.describe() +
                                       "); the output would be empty");
  }
  g.ho = (padded_h - g.kh) / stride + 1;
  g.wo = (padded_w - g.kw) / stride + 1;
  // The CPU kernels hand sizes and row strides to BLAS as 32-bit integers.
  const auto fits = [](int64_t a, int64_t b) { return a <= INT_MAX && b <= INT_MAX && a * b <= INT_MAX; };
  if (!fits(g.cin, g.kh) || !fits(g.cin * g.kh, g.kw) || !fits(g.h, g.w) || !fits(g.ho, g.wo) || g.cout > INT_MAX) {
    fail(ErrorCode::Unsupported, std::string(op) + ": x " + x.describe() + " with weight " + w.describe() +
                                     " is too large (a plane or an im2col column exceeds 2^31 elements)");
  }
  return g;
}

Launch conv2d_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "conv2d_forward";
  const Tensor& x = input(op, inputs, 0, "x");
  const Tensor& w = input(op, inputs, 1, "weight");
  const Tensor* bias = optional_input(inputs, 2);
  const Conv2dGeometry g = check_conv(op, x, w, bias, attrs);
  Tensor y = Tensor::empty({g.n, g.cout, g.ho, g.wo}, x.dtype, x.device);
  Conv2dForwardArgs args{x.dtype, x.data(), w.data(), bias ? bias->data() : nullptr, y.data(), g};
  std::vector<Tensor> keep = {x, w};
  if (bias) keep.push_back(*bias);
  return kernel_launch("conv2d_forward", x.device, {y}, keep, args);
}

Launch conv2d_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "conv2d_backward";
  const Tensor& dy = input(op, inputs, 0, "dy");
  const Tensor& x = input(op, inputs, 1, "x");
  const Tensor& w = input(op, inputs, 2, "weight");
  const Conv2dGeometry g = check_conv(op, x, w, nullptr, attrs);
  check_matches(op, x, "x", dy, "dy");
  check_shape(op, dy, "dy", {g.n, g.cout, g.ho, g.wo});
  const bool input_grad = attrs.get_bool(op, "inputGrad", true);
  const bool weight_grad = attrs.get_bool(op, "weightGrad", true);
  const bool bias_grad = attrs.get_bool(op, "biasGrad", false);
  if (!input_grad && !weight_grad && !bias_grad) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": inputGrad, weightGrad and biasGrad are all false: no gradient asked for");
  }
  std::vector<Tensor> outputs;
  Conv2dBackwardArgs args{x.dtype, dy.data(), x.data(), w.data(), nullptr, nullptr, nullptr, g};
  if (input_grad) {
    Tensor dx = Tensor::empty(x.shape, x.dtype, x.device);
    args.dx = dx.data();
    outputs.push_back(dx);
  }
  if (weight_grad) {
    Tensor dw = Tensor::empty(w.shape, w.dtype, w.device);
    args.dw = dw.data();
    outputs.push_back(dw);
  }
  if (bias_grad) {
    Tensor db = Tensor::empty({g.cout}, w.dtype, w.device);
    args.dbias = db.data();
    outputs.push_back(db);
  }
  return kernel_launch("conv2d_backward", x.device, outputs, {dy, x, w}, args);
}

}  // namespace

IMPRINT_REGISTER_OP(conv2d_forward, conv2d_forward);
IMPRINT_REGISTER_OP(conv2d_backward, conv2d_backward);

}  // namespace ops
}  // namespace imprint
