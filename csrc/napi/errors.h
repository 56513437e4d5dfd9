// Native errors to JavaScript: every imprint::Error (and any stray C++
// exception) becomes an instance of lib's ImprintError with its code.
#pragma once
#include <napi.h>

#include <string>

#include "core/error.h"

namespace imprint {
namespace napi {

Napi::Value make_error(Napi::Env env, ErrorCode code, const std::string& message);

// Runs body, turning C++ exceptions into a thrown ImprintError.
template <class F>
Napi::Value guarded(Napi::Env env, F&& body) {
  ErrorCode code;
  std::string message;
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const Error& e) {
    code = e.code();
    message = e.what();
  } catch (const std::bad_alloc&) {
    code = ErrorCode::OutOfMemory;
    message = "out of host memory";
  } catch (const std::exception& e) {
    code = ErrorCode::Internal;
    message = std::string("internal error: ") + e.what();
  }
  throw Napi::Error(env, make_error(env, code, message));
}

}  // namespace napi
}  // namespace imprint
