// Errors raised by native code. Every failure the engine can detect becomes an
// imprint::Error with a stable code; the N-API layer turns it into the
// JavaScript ImprintError subclass with the same code and message.
#pragma once
#include <stdexcept>
#include <string>

namespace imprint {

enum class ErrorCode {
  InvalidArgument,   // an option or argument has the wrong type or value
  ShapeMismatch,     // shapes do not fit the op
  DtypeMismatch,     // dtypes differ where they must agree, or are unsupported
  DeviceMismatch,    // tensors live on different devices
  Disposed,          // a tensor was used after dispose()
  OutOfMemory,       // an allocation failed or would exceed the device limit
  CudaNotBuilt,      // this binary was compiled without CUDA
  CudaUnavailable,   // CUDA built in, but no driver or no device
  CudaError,         // a CUDA call failed
  Unsupported,       // the op has no kernel for this device or dtype yet
  Internal,          // a bug: an invariant of the engine did not hold
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] inline void fail(ErrorCode code, const std::string& message) { throw Error(code, message); }

}  // namespace imprint
