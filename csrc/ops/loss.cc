// The MSE loss ops' plans (kernels in csrc/cpu/loss.cc, cuda/loss.cu):
// mse_loss_forward(pred, target, mask?) → loss []
// mse_loss_backward(pred, target, mask?; gradScale = 1) → dpred
#include <string>
#include <vector>

#include "core/args/loss.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

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

}  // namespace

IMPRINT_REGISTER_OP(mse_loss_forward, mse_loss_forward);
IMPRINT_REGISTER_OP(mse_loss_backward, mse_loss_backward);

}  // namespace ops
}  // namespace imprint
