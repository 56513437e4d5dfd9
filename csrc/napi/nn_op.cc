// nnOp(name, inputs, attrs): the one N-API entry of the neural-network op
// library (csrc/ops/op_registry.h). Resolves to an array of output handles.
#include "napi/nn_op.h"

#include "napi/async_op.h"
#include "napi/errors.h"
#include "napi/tensor_handle.h"
#include "ops/op_registry.h"

namespace imprint {
namespace napi {
namespace {

ops::Attrs read_attrs(const Napi::Value& value, const std::string& op) {
  ops::Attrs attrs;
  if (value.IsUndefined() || value.IsNull()) return attrs;
  if (!value.IsObject() || value.IsArray()) fail(ErrorCode::InvalidArgument, op + ": attrs must be an object");
  Napi::Object obj = value.As<Napi::Object>();
  Napi::Array keys = obj.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string key = keys.Get(i).As<Napi::String>().Utf8Value();
    Napi::Value v = obj.Get(key);
    if (v.IsUndefined()) continue;
    if (v.IsNumber()) {
      attrs.numbers[key] = v.As<Napi::Number>().DoubleValue();
    } else if (v.IsBoolean()) {
      attrs.numbers[key] = v.As<Napi::Boolean>().Value() ? 1.0 : 0.0;
    } else if (v.IsArray()) {
      Napi::Array arr = v.As<Napi::Array>();
      std::vector<double> list;
      for (uint32_t j = 0; j < arr.Length(); ++j) {
        Napi::Value e = arr.Get(j);
        if (!e.IsNumber()) fail(ErrorCode::InvalidArgument, op + ": attribute '" + key + "' must hold only numbers");
        list.push_back(e.As<Napi::Number>().DoubleValue());
      }
      attrs.lists[key] = std::move(list);
    } else {
      fail(ErrorCode::InvalidArgument, op + ": attribute '" + key + "' must be a number, a boolean or a list of numbers");
    }
  }
  return attrs;
}

Napi::Value nn_op(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsString()) fail(ErrorCode::InvalidArgument, "nnOp: the op name must be a string");
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    if (!info[1].IsArray()) fail(ErrorCode::InvalidArgument, name + ": inputs must be an array");
    Napi::Array list = info[1].As<Napi::Array>();
    std::vector<Tensor> held;  // copies, so the pointers below stay valid
    held.reserve(list.Length());
    std::vector<bool> present;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      Napi::Value v = list.Get(i);
      if (v.IsNull() || v.IsUndefined()) {
        held.emplace_back();
        present.push_back(false);
      } else {
        const std::string what = "input " + std::to_string(i);
        held.push_back(TensorHandle::unwrap(v, name.c_str(), what.c_str()));
        present.push_back(true);
      }
    }
    ops::OpInputs inputs;
    for (size_t i = 0; i < held.size(); ++i) inputs.push_back(present[i] ? &held[i] : nullptr);
    ops::Attrs attrs = read_attrs(info[2], name);
    return run_async_outputs(info.Env(), ops::plan_op(name, inputs, attrs));
  });
}

Napi::Value nn_op_names(const Napi::CallbackInfo& info) {
  std::vector<std::string> names = ops::op_names();
  Napi::Array out = Napi::Array::New(info.Env(), names.size());
  for (size_t i = 0; i < names.size(); ++i) out.Set(static_cast<uint32_t>(i), names[i]);
  return out;
}

}  // namespace

void register_nn_op(Napi::Env env, Napi::Object exports) {
  exports.Set("nnOp", Napi::Function::New(env, nn_op, "nnOp"));
  exports.Set("nnOpNames", Napi::Function::New(env, nn_op_names, "nnOpNames"));
}

}  // namespace napi
}  // namespace imprint
