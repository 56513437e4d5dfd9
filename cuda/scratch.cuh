// Device scratch memory for one kernel function, from the current device's
// backend and given back when the function returns. The backend frees in
// device order (or caches the block for a later request on the same stream),
// so returning it before the queued kernels finish is safe.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "core/backend.h"
#include "core/error.h"
#include "cuda_check.cuh"

namespace imprint {
namespace cuda {

class Scratch {
 public:
  // `what` names the request in the out-of-memory message.
  Scratch(size_t bytes, const char* what) : bytes_(bytes) {
    if (bytes_ == 0) return;
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    backend_ = &cuda_backend(device);
    ptr_ = backend_->raw_allocate(bytes_);
    if (ptr_ == nullptr) {
      fail(ErrorCode::OutOfMemory, std::string(what) + ": no room on cuda:" + std::to_string(device) + " for " +
                                       std::to_string(bytes_) + " bytes of scratch memory");
    }
  }
  ~Scratch() {
    if (ptr_ != nullptr) backend_->raw_free(ptr_, bytes_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  template <class T> T* as(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(ptr_) + byte_offset);
  }

 private:
  size_t bytes_;
  Backend* backend_ = nullptr;
  void* ptr_ = nullptr;
};

}  // namespace cuda
}  // namespace imprint
