// linear_lowrank_forward(x [..., in], weight [out, in], down, up, bias? [out]; scale = 1)
//   → y [..., out], u [..., rank]
// linear_lowrank_backward(dy [..., out], x, weight, down, up, u; scale, weightGrad = false,
//   biasGrad = false) → dx, ddown, dup, then dweight and dbias when asked for.
// y = x·Wᵀ + b + scale·(x·downᵀ)·upᵀ: LoRA without merging. down is [rank, in]
// and up [out, rank], shared by every row; or [samples, rank, in] and
// [samples, out, rank], one per leading slice of x (x [samples, ..., in]).
#include <cmath>

#include "core/args/linear.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

struct LowRankShapes {
  int64_t samples, rows_per_sample, in, out, rank;
  bool down_per_sample, up_per_sample;
};

std::string shape_text(const Shape& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

LowRankShapes check_lowrank(const char* op, const Tensor& x, const Tensor& w, const Tensor& down, const Tensor& up,
                            const Tensor* bias) {
  check_float(op, x);
  check_matches(op, x, "x", w, "weight");
  check_matches(op, x, "x", down, "down");
  check_matches(op, x, "x", up, "up");
  check_ndim(op, w, "weight", 2, "[out_features, in_features]");
  const int64_t in = w.shape[1], out = w.shape[0];
  if (x.ndim() < 1 || x.shape.back() != in) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": x's last dimension must equal weight's in_features " +
                                       std::to_string(in) + " (x is " + x.describe() + ", weight is " + w.describe() +
                                       ")");
  }
  if (down.ndim() != 2 && down.ndim() != 3) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": down must be [rank, in_features] or [samples, rank, " +
                                       "in_features], got " + down.describe());
  }
  if (up.ndim() != 2 && up.ndim() != 3) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": up must be [out_features, rank] or [samples, " +
                                       "out_features, rank], got " + up.describe());
  }
  LowRankShapes s{1, 0, in, out, down.shape[down.ndim() - 2], down.ndim() == 3, up.ndim() == 3};
  if (s.rank < 1) fail(ErrorCode::ShapeMismatch, std::string(op) + ": down's rank must be at least 1, got " + down.describe());
  const Shape down_tail = {s.rank, in}, up_tail = {out, s.rank};
  if (Shape(down.shape.end() - 2, down.shape.end()) != down_tail) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": down must end in [rank, in_features] = " +
                                       shape_text(down_tail) + ", got " + down.describe());
  }
  if (Shape(up.shape.end() - 2, up.shape.end()) != up_tail) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": up must end in [out_features, rank] = " + shape_text(up_tail) +
                                       " (rank " + std::to_string(s.rank) + " from down " + down.describe() +
                                       "), got " + up.describe());
  }
  if (s.down_per_sample || s.up_per_sample) {
    const int64_t n = s.down_per_sample ? down.shape[0] : up.shape[0];
    if (s.down_per_sample && s.up_per_sample && up.shape[0] != n) {
      fail(ErrorCode::ShapeMismatch, std::string(op) + ": down " + down.describe() + " and up " + up.describe() +
                                         " give different sample counts");
    }
    if (x.ndim() < 2 || x.shape[0] != n) {
      fail(ErrorCode::ShapeMismatch, std::string(op) + ": per-sample low-rank weights need x [samples = " +
                                         std::to_string(n) + ", ..., in_features], got " + x.describe());
    }
    s.samples = n;
  }
  if (bias) {
    check_matches(op, x, "x", *bias, "bias");
    check_shape(op, *bias, "bias", {out});
  }
  int64_t rows = 1;  // every dim of x but the last
  for (size_t d = 0; d + 1 < x.shape.size(); ++d) rows *= x.shape[d];
  s.rows_per_sample = s.samples == 0 ? 0 : rows / s.samples;
  return s;
}

float scale_attr(const char* op, const Attrs& attrs) {
  const double scale = attrs.get_number(op, "scale", 1.0);
  if (!std::isfinite(scale) || std::fabs(scale) > 3.4e38) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": scale must be a finite f32, got " + std::to_string(scale));
  }
  return static_cast<float>(scale);
}

Launch linear_lowrank_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "linear_lowrank_forward";
  const Tensor& x = input(op, inputs, 0, "x");
  const Tensor& w = input(op, inputs, 1, "weight");
  const Tensor& down = input(op, inputs, 2, "down");
  const Tensor& up = input(op, inputs, 3, "up");
  const Tensor* bias = optional_input(inputs, 4);
  const LowRankShapes s = check_lowrank(op, x, w, down, up, bias);
  const float scale = scale_attr(op, attrs);
  Shape y_shape = x.shape, u_shape = x.shape;
  y_shape.back() = s.out;
  u_shape.back() = s.rank;
  Tensor y = Tensor::empty(y_shape, x.dtype, x.device);
  Tensor u = Tensor::empty(u_shape, x.dtype, x.device);
  LinearLowRankForwardArgs args{x.dtype, x.data(), w.data(), down.data(), up.data(), bias ? bias->data() : nullptr,
                                y.data(), u.data(), s.samples, s.rows_per_sample, s.in, s.out, s.rank,
                                s.down_per_sample, s.up_per_sample, scale};
  std::vector<Tensor> keep = {x, w, down, up};
  if (bias) keep.push_back(*bias);
  return kernel_launch("linear_lowrank_forward", x.device, {y, u}, keep, args);
}

Launch linear_lowrank_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "linear_lowrank_backward";
  const Tensor& dy = input(op, inputs, 0, "dy");
  const Tensor& x = input(op, inputs, 1, "x");
  const Tensor& w = input(op, inputs, 2, "weight");
  const Tensor& down = input(op, inputs, 3, "down");
  const Tensor& up = input(op, inputs, 4, "up");
  const Tensor& u = input(op, inputs, 5, "u");
  const LowRankShapes s = check_lowrank(op, x, w, down, up, nullptr);
  const float scale = scale_attr(op, attrs);
  check_matches(op, x, "x", dy, "dy");
  check_matches(op, x, "x", u, "u");
  Shape dy_shape = x.shape, u_shape = x.shape;
  dy_shape.back() = s.out;
  u_shape.back() = s.rank;
  check_shape(op, dy, "dy", dy_shape);
  check_shape(op, u, "u", u_shape);
  const bool weight_grad = attrs.get_bool(op, "weightGrad", false);
  const bool bias_grad = attrs.get_bool(op, "biasGrad", false);
  Tensor dx = Tensor::empty(x.shape, x.dtype, x.device);
  Tensor d_down = Tensor::empty(down.shape, x.dtype, x.device);
  Tensor d_up = Tensor::empty(up.shape, x.dtype, x.device);
  std::vector<Tensor> outputs = {dx, d_down, d_up};
  LinearLowRankBackwardArgs args{x.dtype, dy.data(), x.data(), w.data(), down.data(), up.data(), u.data(),
                                 dx.data(), d_down.data(), d_up.data(), nullptr, nullptr,
                                 s.samples, s.rows_per_sample, s.in, s.out, s.rank,
                                 s.down_per_sample, s.up_per_sample, scale};
  linear_weight_grads(w, s.out, weight_grad, bias_grad, &args.dw, &args.dbias, outputs);
  return kernel_launch("linear_lowrank_backward", x.device, outputs, {dy, x, w, down, up, u}, args);
}

}  // namespace

IMPRINT_REGISTER_OP(linear_lowrank_forward, linear_lowrank_forward);
IMPRINT_REGISTER_OP(linear_lowrank_backward, linear_lowrank_backward);

}  // namespace ops
}  // namespace imprint
