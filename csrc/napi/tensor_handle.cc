#include "napi/tensor_handle.h"

#include <cstring>

#include "napi/convert.h"
#include "napi/errors.h"
#include "ops/ops.h"
#include "napi/state.h"

namespace imprint {
namespace napi {

Napi::Function TensorHandle::define(Napi::Env env) {
  return DefineClass(env, "TensorHandle",
                     {
                         InstanceAccessor<&TensorHandle::shape>("shape"),
                         InstanceAccessor<&TensorHandle::dtype>("dtype"),
                         InstanceAccessor<&TensorHandle::device>("device"),
                         InstanceAccessor<&TensorHandle::nbytes>("nbytes"),
                         InstanceAccessor<&TensorHandle::disposed>("disposed"),
                         InstanceMethod<&TensorHandle::dispose>("dispose"),
                         InstanceMethod<&TensorHandle::data_sync>("dataSync"),
                     });
}

TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {}

TensorHandle::~TensorHandle() {
  // Finalizers may not call into JavaScript; the GC accounting is dropped with the object.
  tensor_.reset();
}

Napi::Object TensorHandle::wrap(Napi::Env env, const Tensor& tensor) {
  Napi::Object obj = state(env).tensor_class.New({});
  TensorHandle* handle = Unwrap(obj);
  handle->tensor_ = tensor;
  handle->description_ = tensor.describe();
  if (tensor.device.is_cpu()) {
    handle->external_bytes_ = static_cast<int64_t>(tensor.nbytes());
    Napi::MemoryManagement::AdjustExternalMemory(env, handle->external_bytes_);
  }
  return obj;
}

void TensorHandle::release(Napi::Env env) {
  if (!tensor_) return;
  tensor_.reset();
  if (external_bytes_) Napi::MemoryManagement::AdjustExternalMemory(env, -external_bytes_);
  external_bytes_ = 0;
}

const Tensor& TensorHandle::unwrap(const Napi::Value& value, const char* op, const char* name) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(state(env).tensor_class.Value())) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": " + name + " is not a tensor");
  }
  return Unwrap(value.As<Napi::Object>())->live(env, op);
}

const Tensor& TensorHandle::live(Napi::Env, const char* op) const {
  if (!tensor_) {
    fail(ErrorCode::Disposed, std::string(op) + ": tensor " + description_ + " was used after dispose()");
  }
  return *tensor_;
}

Napi::Value TensorHandle::shape(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Tensor& t = live(info.Env(), "shape");
    Napi::Array arr = Napi::Array::New(info.Env(), t.shape.size());
    for (size_t i = 0; i < t.shape.size(); ++i) arr.Set(i, Napi::Number::New(info.Env(), static_cast<double>(t.shape[i])));
    return arr;
  });
}

Napi::Value TensorHandle::dtype(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::String::New(info.Env(), dtype_name(live(info.Env(), "dtype").dtype));
  });
}

Napi::Value TensorHandle::device(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::String::New(info.Env(), live(info.Env(), "device").device.str());
  });
}

Napi::Value TensorHandle::nbytes(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), static_cast<double>(live(info.Env(), "nbytes").nbytes()));
  });
}

Napi::Value TensorHandle::disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !tensor_); }

Napi::Value TensorHandle::dispose(const Napi::CallbackInfo& info) {
  release(info.Env());
  return info.Env().Undefined();
}

// dataSync(dtype?): a copy of the data as an ArrayBuffer, converted to `dtype`
// when given (lib reads f16/bf16 as f32 this way).
Napi::Value TensorHandle::data_sync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Tensor& t = live(info.Env(), "dataSync");
    const DType as = info[0].IsUndefined() ? t.dtype : to_dtype(info[0], "dataSync");
    const size_t bytes = static_cast<size_t>(t.numel()) * dtype_size(as);
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(info.Env(), bytes);
    ops::to_host(t, as, buffer.Data());
    return buffer;
  });
}

}  // namespace napi
}  // namespace imprint
