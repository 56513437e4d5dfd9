// Linked into builds without CUDA (binding.gyp, IMPRINT_CUDA=off): the CUDA
// capability exists in the API and answers that this binary has none.
#include "core/backend.h"
#include "core/error.h"

namespace imprint {

CudaStatus cuda_status() {
  CudaStatus status;
  status.built = false;
  status.available = false;
  status.reason = "this build of Imprint was compiled without CUDA (rebuild with nvcc on PATH and IMPRINT_CUDA=on)";
  return status;
}

Backend& cuda_backend(int index) {
  fail(ErrorCode::CudaNotBuilt, "cuda:" + std::to_string(index) + " requested, but " + cuda_status().reason);
}

}  // namespace imprint
