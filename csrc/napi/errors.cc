#include "napi/errors.h"

#include "napi/state.h"

namespace imprint {
namespace napi {

Napi::Value make_error(Napi::Env env, ErrorCode code, const std::string& message) {
  AddonState& s = state(env);
  Napi::String msg = Napi::String::New(env, message);
  Napi::String code_name = Napi::String::New(env, error_code_name(code));
  if (!s.error_class.IsEmpty()) return s.error_class.New({msg, code_name});
  // Before lib registered its class (direct use of the addon): a plain Error with .code.
  Napi::Error err = Napi::Error::New(env, message);
  err.Value().Set("code", code_name);
  return err.Value();
}

}  // namespace napi
}  // namespace imprint
