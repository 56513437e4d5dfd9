// The CPU backend: host memory (64-byte aligned) and the kernels in csrc/cpu.
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "core/backend.h"
#include "cpu/host_cache.h"
#include "cpu/kernels.h"

namespace imprint {
namespace {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::cpu(); }

  void* raw_allocate(size_t bytes) override { return cpu::host_allocate(bytes); }
  void raw_free(void* ptr, size_t bytes) override { cpu::host_free(ptr, bytes); }
  uint64_t cached_bytes() override { return cpu::host_cached_bytes(); }
  void empty_cache() override { cpu::host_empty_cache(); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_from_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_on_device(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void device_memory(uint64_t* free_bytes, uint64_t* total_bytes) override {
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    *free_bytes = static_cast<uint64_t>(sysconf(_SC_AVPHYS_PAGES)) * page;
    *total_bytes = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * page;
  }

  void matmul(const MatmulArgs& args) override { cpu::matmul(args); }
  void binary(const BinaryArgs& args) override { cpu::binary(args); }
  void sum(const SumArgs& args) override { cpu::sum(args); }
  void random(const RandomArgs& args) override { cpu::random(args); }
  void cast(const CastArgs& args) override { cpu::cast(args); }
  void fill(const FillArgs& args) override { cpu::fill(args); }
  void synchronize() override {}
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend* backend = new CpuBackend();
  return *backend;
}

}  // namespace imprint
