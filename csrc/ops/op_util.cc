#include "ops/op_util.h"

namespace imprint {
namespace ops {

std::string both(const Tensor& a, const Tensor& b) { return "a is " + a.describe() + ", b is " + b.describe(); }

void check_float(const char* op, const Tensor& t) {
  if (!is_floating(t.dtype)) {
    fail(ErrorCode::DtypeMismatch, std::string(op) + ": " + t.describe() + " has dtype " + dtype_name(t.dtype) +
                                       "; this op supports f32, f16 and bf16");
  }
}

void check_float(const char* op, const Tensor& t, const char* name) {
  if (!is_floating(t.dtype)) {
    fail(ErrorCode::DtypeMismatch, std::string(op) + ": " + name + " must be a float tensor (f32, f16 or bf16), got " +
                                       t.describe());
  }
}

void check_same_device_and_dtype(const char* op, const Tensor& a, const Tensor& b) {
  if (a.device != b.device) {
    fail(ErrorCode::DeviceMismatch, std::string(op) + ": inputs are on different devices (" + both(a, b) +
                                        "); move one with .to()");
  }
  if (a.dtype != b.dtype) {
    fail(ErrorCode::DtypeMismatch, std::string(op) + ": dtypes differ (" + both(a, b) + "); convert one with .cast()");
  }
}

void check_matches(const char* op, const Tensor& ref, const char* ref_name, const Tensor& t, const char* name) {
  if (ref.device != t.device) {
    fail(ErrorCode::DeviceMismatch, std::string(op) + ": " + name + " is " + t.describe() + " but " + ref_name +
                                        " is " + ref.describe() + "; put them on one device");
  }
  if (ref.dtype != t.dtype) {
    fail(ErrorCode::DtypeMismatch, std::string(op) + ": " + name + " is " + t.describe() + " but " + ref_name +
                                       " is " + ref.describe() + "; they need the same dtype");
  }
}

void check_ndim(const char* op, const Tensor& t, const char* name, int ndim, const char* layout) {
  if (t.ndim() != ndim) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": " + name + " must be " + std::to_string(ndim) + "-D " + layout +
                                       ", got " + t.describe());
  }
}

void check_shape(const char* op, const Tensor& t, const char* name, const Shape& expected) {
  if (t.shape != expected) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": " + name + " must have shape " + shape_str(expected) +
                                       ", got " + t.describe());
  }
}

void check_device(const char* op, const Tensor& ref, const char* ref_name, const Tensor& t, const char* name) {
  if (ref.device != t.device) {
    fail(ErrorCode::DeviceMismatch, std::string(op) + ": " + name + " is " + t.describe() + " but " + ref_name +
                                        " is " + ref.describe() + "; put them on one device");
  }
}

[[noreturn]] void bad_attr(const char* op, const std::string& what) {
  fail(ErrorCode::InvalidArgument, std::string(op) + ": " + what);
}

const Tensor& input(const char* op, const OpInputs& inputs, size_t i, const char* name) {
  if (i >= inputs.size() || inputs[i] == nullptr) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": input " + std::to_string(i) + " (" + name + ") is required");
  }
  return *inputs[i];
}

const Tensor* optional_input(const OpInputs& inputs, size_t i) { return i < inputs.size() ? inputs[i] : nullptr; }

void linear_weight_grads(const Tensor& weight, int64_t out, bool weight_grad, bool bias_grad, void** dw, void** dbias,
                         std::vector<Tensor>& outputs) {
  if (weight_grad) {
    outputs.push_back(Tensor::empty(weight.shape, weight.dtype, weight.device));
    *dw = outputs.back().data();
  }
  if (bias_grad) {
    outputs.push_back(Tensor::empty({out}, weight.dtype, weight.device));
    *dbias = outputs.back().data();
  }
}

}  // namespace ops
}  // namespace imprint
