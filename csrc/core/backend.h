// One interface, two implementations: the CPU backend (always built) and the
// CUDA backend (built when nvcc is found, usable when a GPU is present).
// Backends compute; validation and shape logic live in csrc/ops.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/kernel_args.h"

namespace imprint {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // Memory. raw_allocate returns nullptr when the device has no room;
  // raw_free gets the size that was asked for.
  virtual void* raw_allocate(size_t bytes) = 0;
  virtual void raw_free(void* ptr, size_t bytes) = 0;
  // Bytes freed by tensors but kept for reuse, and a way to give them back.
  virtual uint64_t cached_bytes() { return 0; }
  virtual void empty_cache() {}
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_on_device(void* dst, const void* src, size_t bytes) = 0;
  // Free and total bytes of the device (physical memory for the CPU).
  virtual void device_memory(uint64_t* free_bytes, uint64_t* total_bytes) = 0;

  // Kernels.
  virtual void matmul(const MatmulArgs& args) = 0;
  virtual void binary(const BinaryArgs& args) = 0;
  virtual void sum(const SumArgs& args) = 0;
  virtual void random(const RandomArgs& args) = 0;
  virtual void cast(const CastArgs& args) = 0;
  virtual void fill(const FillArgs& args) = 0;

  // Waits for queued device work and reports its errors.
  virtual void synchronize() = 0;

  // Makes this device the calling thread's current one, before a registered
  // kernel runs (CUDA kernels launch on the current device's stream).
  virtual void make_current() {}
};

Backend& cpu_backend();

// The backend for a device. Throws CUDA_NOT_BUILT, CUDA_UNAVAILABLE or
// INVALID_ARGUMENT (no such device index) with the reason.
Backend& backend_for(const Device& device);

// --- CUDA capability, implemented in cuda/ (or by csrc/cuda_stub.cc) ---

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  uint64_t total_memory = 0;
  uint64_t free_memory = 0;
  int compute_major = 0;
  int compute_minor = 0;
  int multiprocessors = 0;
};

struct CudaStatus {
  bool built = false;             // compiled with CUDA
  bool available = false;         // driver and at least one device
  std::string reason;             // why not available
  int runtime_version = 0;        // e.g. 13000
  int driver_version = 0;         // 0 when no driver
  std::string gemm_library;       // GEMM used on the GPU: "cuBLAS 13.1" (opened at run time) or Imprint's own kernels
  std::vector<CudaDeviceInfo> devices;
};

CudaStatus cuda_status();
// Returns the backend for cuda:index or throws with the reason.
Backend& cuda_backend(int index);

}  // namespace imprint
