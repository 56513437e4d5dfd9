// Device memory with accounting: bytes live, peak and an optional limit per
// device. Storage is the reference-counted owner of one allocation; tensors
// and in-flight ops share it, so memory is freed only when nothing uses it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/device.h"

namespace imprint {

class Backend;

struct MemoryStats {
  uint64_t live_bytes = 0;
  uint64_t peak_bytes = 0;
  uint64_t live_allocations = 0;
  uint64_t total_allocations = 0;
  uint64_t limit_bytes = 0;  // 0: no limit beyond the device itself
};

MemoryStats memory_stats(const Device& device);
void reset_peak_memory(const Device& device);
// Caps the bytes Imprint may hold live on a device (0 removes the cap).
void set_memory_limit(const Device& device, uint64_t bytes);

class Storage {
 public:
  // Throws OUT_OF_MEMORY naming the request, what is live and what the device has free.
  static std::shared_ptr<Storage> allocate(const Device& device, size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  const Device& device() const { return device_; }
  Backend& backend() const { return *backend_; }

 private:
  Storage(Backend* backend, const Device& device, void* data, size_t bytes)
      : backend_(backend), device_(device), data_(data), bytes_(bytes) {}
  Backend* backend_;
  Device device_;
  void* data_;
  size_t bytes_;
};

}  // namespace imprint
