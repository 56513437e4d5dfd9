// The gradient-clipping op's plan (kernels in csrc/cpu/clip_grad_norm.cc, cuda/clip_grad_norm.cu):
// clip_grad_norm(g0, g1, ...; maxNorm, normType = 2) → totalNorm [], then the clipped grads
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/args/clip_grad_norm.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

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

IMPRINT_REGISTER_OP(clip_grad_norm, clip_grad_norm);

}  // namespace ops
}  // namespace imprint
