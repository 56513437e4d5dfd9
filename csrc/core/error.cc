#include "core/error.h"

namespace imprint {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return "INVALID_ARGUMENT";
    case ErrorCode::ShapeMismatch: return "SHAPE_MISMATCH";
    case ErrorCode::DtypeMismatch: return "DTYPE_MISMATCH";
    case ErrorCode::DeviceMismatch: return "DEVICE_MISMATCH";
    case ErrorCode::Disposed: return "DISPOSED";
    case ErrorCode::OutOfMemory: return "OUT_OF_MEMORY";
    case ErrorCode::CudaNotBuilt: return "CUDA_NOT_BUILT";
    case ErrorCode::CudaUnavailable: return "CUDA_UNAVAILABLE";
    case ErrorCode::CudaError: return "CUDA_ERROR";
    case ErrorCode::Unsupported: return "UNSUPPORTED";
    case ErrorCode::Internal: return "INTERNAL";
  }
  return "INTERNAL";
}

}  // namespace imprint
