// cuBLAS, opened at run time: the addon has no link-time dependency on it (one
// binary runs with or without the CUDA libraries installed), so the few types,
// enum values and entry points used here are declared locally, with the
// numbers of cublas_api.h and library_types.h.
//
// Row-major products map onto column-major cuBLAS by the usual identity: a
// row-major [m, n] C is a column-major [n, m] Cᵀ, and Cᵀ = op(B)ᵀ · op(A)ᵀ, so
// cuBLAS multiplies B by A with m and n swapped and each operand's own
// transpose flag.
#include <dlfcn.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda_check.cuh"
#include "gemm.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

// --- the cuBLAS ABI subset (values from cublas_api.h / library_types.h) -------
using cublasHandle_t = void*;  // pointer to an opaque context
using cublasStatus_t = int;
constexpr cublasStatus_t kCublasSuccess = 0;  // CUBLAS_STATUS_SUCCESS
constexpr int kOpN = 0;                       // CUBLAS_OP_N
constexpr int kOpT = 1;                       // CUBLAS_OP_T
constexpr int kDefaultMath = 0;               // CUBLAS_DEFAULT_MATH: no TF32 for f32 (parity tolerances hold)
constexpr int kComputeF32 = 68;               // CUBLAS_COMPUTE_32F: f32 accumulation for every input type
constexpr int kGemmDefault = -1;              // CUBLAS_GEMM_DEFAULT
constexpr int kR32F = 0;                      // CUDA_R_32F
constexpr int kR16F = 2;                      // CUDA_R_16F
constexpr int kR16BF = 14;                    // CUDA_R_16BF
constexpr int kMajorVersion = 0;              // MAJOR_VERSION (libraryPropertyType)
constexpr int kMinorVersion = 1;              // MINOR_VERSION

using CreateFn = cublasStatus_t (*)(cublasHandle_t*);
using DestroyFn = cublasStatus_t (*)(cublasHandle_t);
using SetStreamFn = cublasStatus_t (*)(cublasHandle_t, cudaStream_t);
using SetMathModeFn = cublasStatus_t (*)(cublasHandle_t, int);
using GetPropertyFn = cublasStatus_t (*)(int, int*);
using GemmStridedBatchedExFn = cublasStatus_t (*)(cublasHandle_t, int transa, int transb, int m, int n, int k,
                                                  const void* alpha, const void* a, int a_type, int lda,
                                                  long long stride_a, const void* b, int b_type, int ldb,
                                                  long long stride_b, const void* beta, void* c, int c_type, int ldc,
                                                  long long stride_c, int batch, int compute_type, int algo);

struct CublasLibrary {
  bool loaded = false;
  std::string name;  // "cuBLAS 13.1"
  CreateFn create = nullptr;
  DestroyFn destroy = nullptr;
  SetStreamFn set_stream = nullptr;
  SetMathModeFn set_math_mode = nullptr;
  GemmStridedBatchedExFn gemm = nullptr;
};

// IMPRINT_CUBLAS=0 (or off/false) bypasses cuBLAS while it is set: read at
// every GEMM (a getenv is cheap next to a launch), so the parity suite can
// check the fallback kernels case by case on machines that have cuBLAS.
bool disabled_by_env() {
  const char* v = std::getenv("IMPRINT_CUBLAS");
  return v != nullptr && (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0 || std::strcmp(v, "false") == 0);
}

// Opens the newest cuBLAS found, once per process; never closed (the handles
// live as long as the process).
const CublasLibrary& library() {
  static const CublasLibrary lib = [] {
    CublasLibrary l;
    void* so = nullptr;
    for (const char* file : {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}) {
      so = dlopen(file, RTLD_NOW | RTLD_LOCAL);
      if (so != nullptr) break;
    }
    if (so == nullptr) return l;
    l.create = reinterpret_cast<CreateFn>(dlsym(so, "cublasCreate_v2"));
    l.destroy = reinterpret_cast<DestroyFn>(dlsym(so, "cublasDestroy_v2"));
    l.set_stream = reinterpret_cast<SetStreamFn>(dlsym(so, "cublasSetStream_v2"));
    l.set_math_mode = reinterpret_cast<SetMathModeFn>(dlsym(so, "cublasSetMathMode"));
    l.gemm = reinterpret_cast<GemmStridedBatchedExFn>(dlsym(so, "cublasGemmStridedBatchedEx"));
    const auto get_property = reinterpret_cast<GetPropertyFn>(dlsym(so, "cublasGetProperty"));
    if (!l.create || !l.destroy || !l.set_stream || !l.set_math_mode || !l.gemm) return CublasLibrary{};
    int major = 0, minor = 0;
    if (get_property && get_property(kMajorVersion, &major) == kCublasSuccess &&
        get_property(kMinorVersion, &minor) == kCublasSuccess) {
      l.name = "cuBLAS " + std::to_string(major) + "." + std::to_string(minor);
    } else {
      l.name = "cuBLAS";
    }
    l.loaded = true;
    return l;
  }();
  return lib;
}

// One handle per device, made on first use with that device current. A device
// where cublasCreate fails (a library newer than the driver, ...) keeps using
// Imprint's kernels. The mutex also serialises SetStream + Gemm on a handle,
// which cuBLAS does not allow from two threads at once.
struct DeviceHandle {
  std::mutex mutex;
  bool tried = false;
  cublasHandle_t handle = nullptr;
};

DeviceHandle* device_handle(int device) {
  static std::mutex mutex;
  static std::vector<DeviceHandle*>* handles = new std::vector<DeviceHandle*>();  // never freed, like the backends
  std::lock_guard<std::mutex> lock(mutex);
  if (handles->size() <= static_cast<size_t>(device)) handles->resize(static_cast<size_t>(device) + 1, nullptr);
  DeviceHandle*& h = (*handles)[static_cast<size_t>(device)];
  if (h == nullptr) h = new DeviceHandle();
  return h;
}

int data_type(DType dtype) {
  switch (dtype) {
    case DType::F32: return kR32F;
    case DType::F16: return kR16F;
    case DType::BF16: return kR16BF;
    default: fail(ErrorCode::Internal, std::string("cuBLAS gemm reached with dtype ") + dtype_name(dtype));
  }
}

bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

}  // namespace

bool cublas_gemm(const Gemm& g, cudaStream_t stream) {
  const CublasLibrary& lib = library();
  if (!lib.loaded || disabled_by_env()) return false;
  if (!fits_int(g.m) || !fits_int(g.n) || !fits_int(g.k) || !fits_int(g.lda) || !fits_int(g.ldb) ||
      !fits_int(g.ldc)) {
    return false;
  }
  int device = 0;
  IMPRINT_CUDA_CHECK(cudaGetDevice(&device));
  DeviceHandle* h = device_handle(device);
  std::lock_guard<std::mutex> lock(h->mutex);
  if (!h->tried) {
    h->tried = true;
    cublasHandle_t handle = nullptr;
    if (lib.create(&handle) == kCublasSuccess) {
      if (lib.set_math_mode(handle, kDefaultMath) == kCublasSuccess) {
        h->handle = handle;
      } else {
        lib.destroy(handle);
      }
    }
    cudaGetLastError();  // a failed create may leave a runtime error behind; it is not ours to report
  }
  if (h->handle == nullptr) return false;

  const cublasStatus_t set = lib.set_stream(h->handle, stream);
  if (set != kCublasSuccess) fail(ErrorCode::CudaError, "cublasSetStream failed with status " + std::to_string(set));
  const int ab_type = data_type(g.ab_dtype), c_type = data_type(g.c_dtype);
  // Batches in pieces cuBLAS's int batch count (and its grids) surely accept.
  const int64_t max_batch = 65535;
  for (int64_t b0 = 0; b0 < g.batch; b0 += max_batch) {
    const int count = static_cast<int>(std::min<int64_t>(max_batch, g.batch - b0));
    const size_t ab_size = dtype_size(g.ab_dtype), c_size = dtype_size(g.c_dtype);
    const char* a = static_cast<const char*>(g.a) + static_cast<size_t>(b0 * g.stride_a) * ab_size;
    const char* b = static_cast<const char*>(g.b) + static_cast<size_t>(b0 * g.stride_b) * ab_size;
    char* c = static_cast<char*>(g.c) + static_cast<size_t>(b0 * g.stride_c) * c_size;
    // Column-major Cᵀ[n, m] = op(B)ᵀ · op(A)ᵀ: B's storage read as column-major is
    // already op(B)ᵀ unless B is stored transposed, and likewise for A.
    const cublasStatus_t status =
        lib.gemm(h->handle, g.trans_b ? kOpT : kOpN, g.trans_a ? kOpT : kOpN, static_cast<int>(g.n),
                 static_cast<int>(g.m), static_cast<int>(g.k), &g.alpha, b, ab_type, static_cast<int>(g.ldb),
                 g.stride_b, a, ab_type, static_cast<int>(g.lda), g.stride_a, &g.beta, c, c_type,
                 static_cast<int>(g.ldc), g.stride_c, count, kComputeF32, kGemmDefault);
    if (status != kCublasSuccess) {
      fail(ErrorCode::CudaError, "cublasGemmStridedBatchedEx failed with status " + std::to_string(status) + " (" +
                                     std::to_string(g.m) + "x" + std::to_string(g.n) + "x" + std::to_string(g.k) +
                                     ", " + dtype_name(g.ab_dtype) + ")");
    }
  }
  return true;
}

const char* gemm_library() {
  const CublasLibrary& lib = library();
  if (lib.loaded && !disabled_by_env()) {
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) {
      cudaGetLastError();
    } else {
      DeviceHandle* h = device_handle(device);
      std::lock_guard<std::mutex> lock(h->mutex);
      // Before the first GEMM the handle is untried: report what will be tried.
      if (!h->tried || h->handle != nullptr) return lib.name.c_str();
    }
  }
  return device_sm() >= 75 ? "imprint tensor-core" : "imprint SIMT";
}

}  // namespace cuda
}  // namespace imprint
