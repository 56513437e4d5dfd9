// TensorHandle: the JavaScript object that owns a native Tensor. lib/tensor.ts
// wraps it; dispose() frees it now, garbage collection (and lib's
// FinalizationRegistry) frees it otherwise.
#pragma once
#include <napi.h>

#include <optional>

#include "core/tensor.h"

namespace imprint {
namespace napi {

class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  static Napi::Object wrap(Napi::Env env, const Tensor& tensor);
  // The live tensor behind a handle argument; throws DISPOSED or INVALID_ARGUMENT.
  static const Tensor& unwrap(const Napi::Value& value, const char* op, const char* name);

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;

 private:
  void release(Napi::Env env);
  Napi::Value shape(const Napi::CallbackInfo& info);
  Napi::Value dtype(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value nbytes(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value data_sync(const Napi::CallbackInfo& info);
  const Tensor& live(Napi::Env env, const char* op) const;

  std::optional<Tensor> tensor_;
  int64_t external_bytes_ = 0;  // host bytes reported to V8's GC
  std::string description_;     // kept after dispose for error messages
};

}  // namespace napi
}  // namespace imprint
