#include "core/memory.h"

#include <map>
#include <mutex>
#include <sstream>

#include "core/backend.h"
#include "core/error.h"

namespace imprint {
namespace {

std::mutex g_mutex;
std::map<std::pair<int, int>, MemoryStats> g_stats;

MemoryStats& stats_locked(const Device& d) { return g_stats[{static_cast<int>(d.type), d.index}]; }

std::string format_bytes(uint64_t b) {
  std::ostringstream s;
  if (b >= (1ull << 30)) s << static_cast<double>(b) / (1ull << 30) << " GiB";
  else if (b >= (1ull << 20)) s << static_cast<double>(b) / (1ull << 20) << " MiB";
  else s << b << " bytes";
  return s.str();
}

}  // namespace

MemoryStats memory_stats(const Device& device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  return stats_locked(device);
}

void reset_peak_memory(const Device& device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  MemoryStats& s = stats_locked(device);
  s.peak_bytes = s.live_bytes;
}

void set_memory_limit(const Device& device, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  stats_locked(device).limit_bytes = bytes;
}

std::shared_ptr<Storage> Storage::allocate(const Device& device, size_t bytes) {
  Backend& backend = backend_for(device);
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    MemoryStats& s = stats_locked(device);
    if (s.limit_bytes != 0 && s.live_bytes + bytes > s.limit_bytes) {
      fail(ErrorCode::OutOfMemory, "out of memory on " + device.str() + ": cannot allocate " + format_bytes(bytes) +
                                       " with " + format_bytes(s.live_bytes) + " live and a limit of " +
                                       format_bytes(s.limit_bytes) + " (setMemoryLimit)");
    }
    // Reserve before allocating so concurrent allocations cannot overshoot the limit.
    s.live_bytes += bytes;
  }
  void* data = nullptr;
  try {
    if (bytes != 0) data = backend.raw_allocate(bytes);
  } catch (...) {
    std::lock_guard<std::mutex> lock(g_mutex);
    stats_locked(device).live_bytes -= bytes;  // undo the reservation
    throw;
  }
  if (bytes != 0 && data == nullptr) {
    uint64_t free_bytes = 0, total_bytes = 0;
    backend.device_memory(&free_bytes, &total_bytes);
    uint64_t live;
    {
      std::lock_guard<std::mutex> lock(g_mutex);
      MemoryStats& s = stats_locked(device);
      s.live_bytes -= bytes;
      live = s.live_bytes;
    }
    fail(ErrorCode::OutOfMemory, "out of memory on " + device.str() + ": cannot allocate " + format_bytes(bytes) +
                                     " (" + format_bytes(free_bytes) + " free of " + format_bytes(total_bytes) +
                                     ", " + format_bytes(live) + " held by Imprint)");
  }
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    MemoryStats& s = stats_locked(device);
    if (s.live_bytes > s.peak_bytes) s.peak_bytes = s.live_bytes;
    s.live_allocations += 1;
    s.total_allocations += 1;
  }
  return std::shared_ptr<Storage>(new Storage(&backend, device, data, bytes));
}

Storage::~Storage() {
  if (data_ != nullptr) backend_->raw_free(data_, bytes_);
  std::lock_guard<std::mutex> lock(g_mutex);
  MemoryStats& s = stats_locked(device_);
  s.live_bytes -= bytes_;
  s.live_allocations -= 1;
}

}  // namespace imprint
