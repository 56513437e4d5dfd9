// Turns CUDA runtime errors into imprint::Error (code CUDA_ERROR), so a failed
// call surfaces in JavaScript as an ImprintError naming the call and the reason
// instead of a silently wrong result.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "core/error.h"

namespace imprint {
namespace cuda {

// "<what>: <description> (<cudaErrorName>)"; the name helps searching the docs.
inline std::string cuda_error_text(const std::string& what, cudaError_t err) {
  return what + ": " + cudaGetErrorString(err) + " (" + cudaGetErrorName(err) + ")";
}

// Throws CUDA_ERROR with `message` for a failed call. The failure is also the
// thread's "last error"; it is cleared here, once reported, so that a later
// check_launch does not report it again as a failed kernel launch.
[[noreturn]] inline void fail_cuda(cudaError_t err, const std::string& message) {
  cudaGetLastError();
  fail(ErrorCode::CudaError, cuda_error_text(message, err));
}

// Throws CUDA_ERROR when `err` is not cudaSuccess. `what` names the call or op;
// it is only turned into a string on failure, so checks cost nothing otherwise.
inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) fail_cuda(err, what);
}

// Kernel launches return nothing: a bad configuration shows up in the
// thread's last error, which this reads (and clears).
inline void check_launch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) fail_cuda(err, std::string("launching ") + kernel);
}

}  // namespace cuda
}  // namespace imprint

// IMPRINT_CUDA_CHECK(cudaFoo(...)): the failing call's own text names it.
#define IMPRINT_CUDA_CHECK(call) ::imprint::cuda::check((call), #call)
