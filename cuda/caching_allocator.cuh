// Device memory for one GPU, cached for reuse: cudaMalloc and cudaFree are
// slow (and cudaFree waits for the whole device), while a training step frees
// and asks again for the same sizes thousands of times.
//
// Sizes are rounded up (512-byte granules below 1 MiB, 2 MiB granules above)
// so that nearby requests share blocks; a freed block goes into a free list
// keyed by its size and serves the next request it fits best (never one much
// smaller than itself, so a large block is not tied up by a small tensor).
// Blocks are never split.
//
// Why reuse without waiting is safe (stream order): every kernel and copy of
// a device is queued on that device's one stream (CudaBackend::stream). A
// block is freed only once the last work that uses it has been queued, so any
// later work that receives the block is queued after it on the same stream and
// cannot start before that work has finished. Work queued on another stream
// (none today) would break this and would need an event per block.
//
// Thread safety: tensors are allocated and freed from the JavaScript thread
// and from each device's queue thread; one mutex guards the lists.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

namespace imprint {
namespace cuda {

class CachingAllocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {}
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A block of at least `bytes` (the device must be current), or nullptr when
  // the device has no room even after the cache was given back to it.
  void* allocate(size_t bytes);
  // Takes back a block from allocate (the size is looked up, not trusted).
  void free(void* ptr);

  // Bytes in free blocks kept for reuse.
  uint64_t cached_bytes();
  // Gives every free block back to the device (cudaFree waits for the device).
  void empty_cache();

  // "cuda:0: out of memory allocating 1.50 GiB for <what> (free 0.80 GiB of
  // 79.1 GiB; 2.10 GiB cached by Imprint was released first)": the text of
  // the OUT_OF_MEMORY error for a request that allocate refused.
  std::string out_of_memory_text(size_t bytes, const std::string& what);

  // The rounded size a request of `bytes` takes.
  static size_t round_size(size_t bytes);

 private:
  // cudaMalloc; nullptr when the device is out of memory.
  void* device_malloc(size_t bytes);
  // Frees every cached block; returns the bytes released. Needs mutex_.
  uint64_t release_cached_locked();

  const int device_;
  std::mutex mutex_;
  std::multimap<size_t, void*> free_blocks_;     // size → block, for best fit
  std::unordered_map<void*, size_t> live_sizes_; // block → its size, while handed out
  uint64_t cached_ = 0;
  uint64_t released_for_last_failure_ = 0;  // what the last refused request released
};

// The allocator of cuda:index (created on first use, never destroyed, like the backend).
CachingAllocator& caching_allocator(int index);

// Scratch memory for a kernel function on the current device, freed at the
// end of the scope. Freeing before the queued kernels finish is safe (see the
// stream-order note above). Throws OUT_OF_MEMORY naming `what`.
class DeviceScratch {
 public:
  DeviceScratch(size_t bytes, const char* what);
  ~DeviceScratch();
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;

  void* get() const { return ptr_; }
  template <class T> T* as() const { return static_cast<T*>(ptr_); }

 private:
  CachingAllocator* allocator_ = nullptr;
  void* ptr_ = nullptr;
};

}  // namespace cuda
}  // namespace imprint
