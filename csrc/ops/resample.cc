// The nearest-neighbour resize ops' plans (kernels in csrc/cpu/resample.cc, cuda/resample.cu):
// upsample_nearest_forward(x [N, C, H, W]; outH, outW) → y [N, C, outH, outW]
// upsample_nearest_backward(dy [N, C, outH, outW]; inH, inW) → dx [N, C, inH, inW]
//   (F.interpolate(mode='nearest', size=...) and its backward; 2x runs the
//   upsample_nearest2x kernels)
// upsample_nearest2x_forward(x [N, C, H, W]) → y [N, C, 2H, 2W]
// upsample_nearest2x_backward(dy [N, C, 2H, 2W]) → dx [N, C, H, W]
#include <string>

#include "core/args/resample.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

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

Launch upsample_nearest2x_forward(const OpInputs& inputs, const Attrs&) {
  const char* op = "upsample_nearest2x_forward";
  const Tensor& x = input(op, inputs, 0, "x");
  check_float(op, x);
  check_ndim(op, x, "x", 4, "[N, C, H, W]");
  Tensor y = Tensor::empty({x.shape[0], x.shape[1], 2 * x.shape[2], 2 * x.shape[3]}, x.dtype, x.device);
  UpsampleNearest2xArgs args{x.dtype, x.data(), y.data(), x.shape[0] * x.shape[1], x.shape[2], x.shape[3]};
  return kernel_launch("upsample_nearest2x_forward", x.device, {y}, {x}, args);
}

Launch upsample_nearest2x_backward(const OpInputs& inputs, const Attrs&) {
  const char* op = "upsample_nearest2x_backward";
  const Tensor& dy = input(op, inputs, 0, "dy");
  check_float(op, dy);
  check_ndim(op, dy, "dy", 4, "[N, C, 2H, 2W]");
  if (dy.shape[2] % 2 != 0 || dy.shape[3] % 2 != 0) {
    fail(ErrorCode::ShapeMismatch, std::string(op) +
                                       ": dy's height and width must be even (the 2x upsampled size), got " +
                                       dy.describe());
  }
  const int64_t h = dy.shape[2] / 2, w = dy.shape[3] / 2;
  Tensor dx = Tensor::empty({dy.shape[0], dy.shape[1], h, w}, dy.dtype, dy.device);
  UpsampleNearest2xArgs args{dy.dtype, dy.data(), dx.data(), dy.shape[0] * dy.shape[1], h, w};
  return kernel_launch("upsample_nearest2x_backward", dy.device, {dx}, {dy}, args);
}

}  // namespace

IMPRINT_REGISTER_OP(upsample_nearest_forward, upsample_nearest_forward);
IMPRINT_REGISTER_OP(upsample_nearest_backward, upsample_nearest_backward);
IMPRINT_REGISTER_OP(upsample_nearest2x_forward, upsample_nearest2x_forward);
IMPRINT_REGISTER_OP(upsample_nearest2x_backward, upsample_nearest2x_backward);

}  // namespace ops
}  // namespace imprint
