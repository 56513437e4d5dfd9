// Shared checks and launch builders for op plans (csrc/ops/*.cc). Messages
// name the op, the argument, and the tensor's dtype, shape and device.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "core/kernel_registry.h"
#include "core/tensor.h"
#include "ops/op_registry.h"
#include "ops/ops.h"

namespace imprint {
namespace ops {

std::string both(const Tensor& a, const Tensor& b);
void check_float(const char* op, const Tensor& t);
// The same, naming the argument: "x must be a float tensor (f32, f16 or bf16), got i32[2] on cpu".
void check_float(const char* op, const Tensor& t, const char* name);
void check_same_device_and_dtype(const char* op, const Tensor& a, const Tensor& b);
// Same device and dtype as `ref`, described by name ("weight", "bias").
void check_matches(const char* op, const Tensor& ref, const char* ref_name, const Tensor& t, const char* name);
void check_ndim(const char* op, const Tensor& t, const char* name, int ndim, const char* layout);
void check_shape(const char* op, const Tensor& t, const char* name, const Shape& expected);
// Same device as `ref` (any dtype), described by name ("ids", "rowMask").
void check_device(const char* op, const Tensor& ref, const char* ref_name, const Tensor& t, const char* name);
// A bad attribute value: INVALID_ARGUMENT "<op>: <what>".
[[noreturn]] void bad_attr(const char* op, const std::string& what);

// Input i, which must be present.
const Tensor& input(const char* op, const OpInputs& inputs, size_t i, const char* name);
// Input i or nullptr when omitted.
const Tensor* optional_input(const OpInputs& inputs, size_t i);

// A linear layer's optional weight gradients: when asked, dW (the weight's
// shape and dtype) and db [out] are allocated, appended to `outputs` in that
// order, and their data pointers stored in *dw / *dbias.
void linear_weight_grads(const Tensor& weight, int64_t out, bool weight_grad, bool bias_grad, void** dw, void** dbias,
                         std::vector<Tensor>& outputs);

// A launch of the registered kernel `kernel` on `device`: the kernel is looked
// up now (UNSUPPORTED if the device has none), runs on the device queue, and
// `inputs` and `outputs` stay alive until it finishes.
template <class Args>
Launch kernel_launch(const char* kernel, const Device& device, std::vector<Tensor> outputs, std::vector<Tensor> inputs,
                     const Args& args) {
  KernelFn fn = find_kernel(kernel, device);
  Backend* backend = &backend_for(device);
  Launch launch;
  launch.queue = device;
  launch.output = outputs.empty() ? Tensor() : outputs.front();
  launch.outputs = std::move(outputs);
  launch.inputs = std::move(inputs);
  launch.run = [fn, backend, args] {
    backend->make_current();
    fn(&args);
    backend->synchronize();
  };
  return launch;
}

}  // namespace ops
}  // namespace imprint
