// The AdamW op's plan (kernels in csrc/cpu/adamw.cc, cuda/adamw.cu):
// adamw_step(param, grad, expAvg, expAvgSq, copy?; lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8,
//   weightDecay = 1e-2, step) → param, expAvg, expAvgSq (new tensors), then the new copy
//   when copy is given: mixed precision, with param an f32 master, grad in any float
//   dtype and copy the model's f16/bf16 weight (only its dtype is read)
#include <cmath>
#include <string>
#include <utility>

#include "core/args/adamw.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

// The step's scalars (core/args/adamw.h), derived here once for both devices'
// kernels: torch.optim.AdamW's single-tensor arithmetic in double, each
// scalar then rounded to f32 as PyTorch rounds a Python float applied to an
// f32 tensor.
AdamwScalars adamw_scalars(double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  const double t = static_cast<double>(step);
  AdamwScalars s;
  s.decay = static_cast<float>(1.0 - lr * weight_decay);
  s.b1 = static_cast<float>(beta1);
  s.one_minus_b1 = static_cast<float>(1.0 - beta1);
  s.b2 = static_cast<float>(beta2);
  s.one_minus_b2 = static_cast<float>(1.0 - beta2);
  s.neg_step_size = static_cast<float>(-(lr / (1.0 - std::pow(beta1, t))));
  s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, t)));
  s.eps = static_cast<float>(eps);
  return s;
}

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
  const double lr = attrs.get_number(op, "lr");
  const double beta1 = attrs.get_number(op, "beta1", 0.9);
  const double beta2 = attrs.get_number(op, "beta2", 0.999);
  const double eps = attrs.get_number(op, "eps", 1e-8);
  const double weight_decay = attrs.get_number(op, "weightDecay", 1e-2);
  const int64_t step = attrs.get_int(op, "step");
  // The ranges torch.optim.AdamW accepts.
  if (lr < 0) bad_attr(op, "lr must be >= 0, got " + std::to_string(lr));
  if (beta1 < 0 || beta1 >= 1) bad_attr(op, "beta1 must be in [0, 1), got " + std::to_string(beta1));
  if (beta2 < 0 || beta2 >= 1) bad_attr(op, "beta2 must be in [0, 1), got " + std::to_string(beta2));
  if (eps < 0) bad_attr(op, "eps must be >= 0, got " + std::to_string(eps));
  if (weight_decay < 0) bad_attr(op, "weightDecay must be >= 0, got " + std::to_string(weight_decay));
  if (step < 1) bad_attr(op, "step must be >= 1 (the count of steps including this one), got " + std::to_string(step));
  AdamwStepArgs args{};
  args.scalars = adamw_scalars(lr, beta1, beta2, eps, weight_decay, step);
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

}  // namespace

IMPRINT_REGISTER_OP(adamw_step, adamw_step);

}  // namespace ops
}  // namespace imprint
