// The CUDA backend: one Backend per device, memory through the caching
// allocator (caching_allocator.cuh), and all copies and kernels queued on the
// backend's own stream. Also the capability
// probe (cuda_status) and the per-device singletons (cuda_backend) that
// replace csrc/cuda_stub.cc when CUDA is built.
//
// The runtime is linked statically, so the addon loads on machines without a
// driver; there every probe answers "unavailable" with the reason instead of
// failing.
#include <cuda_runtime.h>

#include <mutex>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "caching_allocator.cuh"
#include "cuda_check.cuh"
#include "kernels.cuh"

namespace imprint {
namespace {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index)
      : index_(index), name_("cuda:" + std::to_string(index)), allocator_(cuda::caching_allocator(index)) {}

  Device device() const override { return Device::cuda(index_); }

  // Through the caching allocator (caching_allocator.cuh: rounding, reuse,
  // and why reuse on this backend's one stream needs no synchronisation).
  // nullptr when the device has no room even after the cache was released;
  // out_of_memory_text then says how much was free and released.
  void* raw_allocate(size_t bytes) override {
    activate();
    return allocator_.allocate(bytes);
  }

  // Runs from Storage's destructor, which must not throw; the block goes back
  // to the cache (no CUDA call), to the device only on empty_cache.
  void raw_free(void* ptr, size_t) override { allocator_.free(ptr); }

  uint64_t cached_bytes() override { return allocator_.cached_bytes(); }
  void empty_cache() override { allocator_.empty_cache(); }

  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    activate();
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()), "cudaMemcpyAsync (device to host)");
  }
  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    activate();
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()), "cudaMemcpyAsync (host to device)");
  }
  void copy_on_device(void* dst, const void* src, size_t bytes) override {
    activate();
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()), "cudaMemcpyAsync (device to device)");
  }

  void device_memory(uint64_t* free_bytes, uint64_t* total_bytes) override {
    activate();
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    *free_bytes = free_b;
    *total_bytes = total_b;
  }

  void matmul(const MatmulArgs& args) override {
    activate();
    cuda::launch_matmul(args, stream());
  }
  void binary(const BinaryArgs& args) override {
    activate();
    cuda::launch_binary(args, stream());
  }
  void sum(const SumArgs& args) override {
    activate();
    cuda::launch_sum(args, stream());
  }
  void random(const RandomArgs& args) override {
    activate();
    cuda::launch_random(args, stream());
  }
  void cast(const CastArgs& args) override {
    activate();
    cuda::launch_cast(args, stream());
  }
  void fill(const FillArgs& args) override {
    activate();
    cuda::launch_fill(args, stream());
  }

  // Kernel faults (bad address, ...) surface here, when the queued work runs.
  void make_current() override { activate(); }

  // Created on first use (with this device current) and never destroyed: it
  // lives as long as the process, like the backend. Non-blocking, so it never
  // serialises with the legacy default stream other libraries may use.
  cudaStream_t stream() {
    std::call_once(stream_once_, [this] {
      check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    });
    return stream_;
  }

  void synchronize() override {
    activate();
    const cudaError_t err = cudaStreamSynchronize(stream());
    if (err != cudaSuccess) cuda::fail_cuda(err, "work queued on " + name_ + " failed");
  }

 private:
  // The calling thread may be any thread (each device has its own queue
  // thread, allocations and frees come from others), so every entry point
  // makes this device current first.
  void activate() {
    const cudaError_t err = cudaSetDevice(index_);
    if (err != cudaSuccess) cuda::fail_cuda(err, "cudaSetDevice(" + name_ + ")");
  }

  void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess) cuda::fail_cuda(err, std::string(what) + " on " + name_);
  }

  const int index_;
  const std::string name_;
  cuda::CachingAllocator& allocator_;
  std::once_flag stream_once_;
  cudaStream_t stream_ = nullptr;
};

std::string version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

// Plain words for why cudaGetDeviceCount failed, always with the runtime's own text.
std::string unavailable_reason(cudaError_t err, int runtime_version, int driver_version) {
  std::string why;
  switch (err) {
    case cudaErrorInsufficientDriver:
      why = driver_version == 0 ? "no NVIDIA driver found"
                                : "the NVIDIA driver supports CUDA " + version_text(driver_version) +
                                      ", older than the CUDA " + version_text(runtime_version) +
                                      " runtime this build uses; update the driver";
      break;
    case cudaErrorNoDevice:
      why = "no CUDA-capable GPU found (check CUDA_VISIBLE_DEVICES)";
      break;
    default:
      why = driver_version == 0 ? "no NVIDIA driver found" : "CUDA could not be initialised";
      break;
  }
  return why + " (CUDA runtime error: " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err) + ")";
}

CudaStatus probe() {
  CudaStatus status;
  status.built = true;
  // The runtime version needs no driver; the driver version reads 0 without one.
  if (cudaRuntimeGetVersion(&status.runtime_version) != cudaSuccess) status.runtime_version = 0;
  if (cudaDriverGetVersion(&status.driver_version) != cudaSuccess) status.driver_version = 0;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    status.available = false;
    status.reason = unavailable_reason(err, status.runtime_version, status.driver_version);
    return status;
  }
  for (int i = 0; i < count; ++i) {
    CudaDeviceInfo info;
    info.index = i;
    cudaDeviceProp prop;
    const cudaError_t prop_err = cudaGetDeviceProperties(&prop, i);
    if (prop_err != cudaSuccess) {
      cudaGetLastError();
      status.available = false;
      status.reason = cuda::cuda_error_text("cudaGetDeviceProperties(cuda:" + std::to_string(i) + ") failed", prop_err);
      status.devices.clear();
      return status;
    }
    info.name = prop.name;
    info.total_memory = prop.totalGlobalMem;
    info.compute_major = prop.major;
    info.compute_minor = prop.minor;
    info.multiprocessors = prop.multiProcessorCount;
    // Free memory needs the device's context (created here, as any use would).
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      info.free_memory = free_b;
    } else {
      cudaGetLastError();
    }
    status.devices.push_back(info);
  }
  status.available = count > 0;
  if (!status.available) status.reason = "the NVIDIA driver reports no CUDA device";
  else status.gemm_library = cuda::gemm_library();
  return status;
}

std::mutex g_status_mutex;
const CudaStatus* g_status = nullptr;  // set once a probe succeeded; never freed

// The probed status: cached after the first probe that found devices; an
// unavailable answer is probed again next time (it is cheap).
CudaStatus probed_status() {
  std::lock_guard<std::mutex> lock(g_status_mutex);
  if (g_status != nullptr) return *g_status;
  CudaStatus status = probe();
  if (status.available) g_status = new CudaStatus(status);
  return status;
}

}  // namespace

CudaStatus cuda_status() {
  CudaStatus status = probed_status();
  // Free memory changes as tensors come and go: report it as of now.
  for (CudaDeviceInfo& info : status.devices) {
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(info.index) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      info.free_memory = free_b;
    } else {
      cudaGetLastError();
    }
  }
  return status;
}

Backend& cuda_backend(int index) {
  // One backend per device for the life of the process (never destroyed, so
  // nothing touches CUDA during static destruction). Once made, handing it
  // out is one short lock and no CUDA call: this runs for every op.
  static std::mutex mutex;
  static std::vector<CudaBackend*>* backends = new std::vector<CudaBackend*>();
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (index >= 0 && static_cast<size_t>(index) < backends->size() && (*backends)[static_cast<size_t>(index)]) {
      return *(*backends)[static_cast<size_t>(index)];
    }
  }
  const CudaStatus status = probed_status();
  const std::string name = "cuda:" + std::to_string(index);
  if (!status.available) fail(ErrorCode::CudaUnavailable, name + " requested, but " + status.reason);
  const int count = static_cast<int>(status.devices.size());
  if (index < 0 || index >= count) {
    fail(ErrorCode::InvalidArgument, name + " does not exist; this machine has " + std::to_string(count) +
                                         (count == 1 ? " CUDA device" : " CUDA devices"));
  }
  std::lock_guard<std::mutex> lock(mutex);
  if (backends->size() < static_cast<size_t>(count)) backends->resize(static_cast<size_t>(count), nullptr);
  CudaBackend*& backend = (*backends)[static_cast<size_t>(index)];
  if (backend == nullptr) backend = new CudaBackend(index);
  return *backend;
}

namespace cuda {

cudaStream_t current_stream() {
  int index = 0;
  IMPRINT_CUDA_CHECK(cudaGetDevice(&index));
  return static_cast<CudaBackend&>(cuda_backend(index)).stream();
}

}  // namespace cuda

}  // namespace imprint
