#include "cpu/host_cache.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

namespace imprint {
namespace cpu {
namespace {

constexpr size_t kCacheFrom = size_t{1} << 20;  // smaller blocks stay with malloc's own bins
constexpr size_t kAlignment = 64;

// Size class: rounded up to 1/8 of the enclosing power of two (≤ 12.5% slack),
// so nearby sizes share blocks.
size_t size_class(size_t bytes) {
  size_t pow2 = 1;
  while (pow2 < bytes) pow2 <<= 1;
  const size_t step = std::max<size_t>(pow2 / 8, 4096);
  return (bytes + step - 1) / step * step;
}

uint64_t default_cap() {
  if (const char* env = std::getenv("IMPRINT_CPU_CACHE_BYTES")) return std::strtoull(env, nullptr, 10);
  const uint64_t ram = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return std::min<uint64_t>(uint64_t{2} << 30, ram / 4);
}

struct Cache {
  std::mutex mutex;
  std::map<size_t, std::vector<void*>> free_blocks;
  uint64_t cached = 0;
  uint64_t cap = default_cap();
};

Cache& cache() {
  static Cache* c = new Cache();  // lives for the process, like the tensors that use it
  return *c;
}

void* fresh(size_t bytes) {
  void* p = nullptr;
  return posix_memalign(&p, kAlignment, bytes) == 0 ? p : nullptr;
}

}  // namespace

void* host_allocate(size_t bytes) {
  if (bytes < kCacheFrom) return fresh(bytes);
  const size_t cls = size_class(bytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free_blocks.find(cls);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.cached -= cls;
      return p;
    }
  }
  void* p = fresh(cls);
  if (p == nullptr) {  // out of memory: give the cache back to the system and try once more
    host_empty_cache();
    p = fresh(cls);
  }
  return p;
}

void host_free(void* ptr, size_t bytes) {
  if (bytes < kCacheFrom) {
    std::free(ptr);
    return;
  }
  const size_t cls = size_class(bytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.cached + cls <= c.cap) {
      c.free_blocks[cls].push_back(ptr);
      c.cached += cls;
      return;
    }
  }
  std::free(ptr);
}

uint64_t host_cached_bytes() {
  std::lock_guard<std::mutex> lock(cache().mutex);
  return cache().cached;
}

void host_empty_cache() {
  Cache& c = cache();
  std::map<size_t, std::vector<void*>> blocks;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    blocks.swap(c.free_blocks);
    c.cached = 0;
  }
  for (auto& entry : blocks)
    for (void* p : entry.second) std::free(p);
}

}  // namespace cpu
}  // namespace imprint
