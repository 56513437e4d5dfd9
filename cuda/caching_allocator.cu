// The caching device allocator (see caching_allocator.cuh for the rules and
// why reuse on the device's one stream is safe).
#include "caching_allocator.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "core/error.h"
#include "cuda_check.cuh"

namespace imprint {
namespace cuda {
namespace {

constexpr size_t kSmallGranule = 512;
constexpr size_t kLargeGranule = size_t{2} << 20;
constexpr size_t kSmallLimit = size_t{1} << 20;  // requests below this use the small granule

size_t round_up(size_t bytes, size_t granule) { return (bytes + granule - 1) / granule * granule; }

// The largest cached block a request of `rounded` bytes may take: small
// requests up to twice their size, large ones up to an eighth (at least one
// large granule) more, so little memory is wasted while a block is handed out.
size_t largest_fit(size_t rounded) {
  if (rounded < kSmallLimit) return 2 * rounded;
  return rounded + std::max(kLargeGranule, rounded / 8);
}

// "1.50 GiB", "512.0 MiB", "4.0 KiB", "100 bytes".
std::string gib_text(uint64_t bytes) {
  char buf[64];
  if (bytes >= (uint64_t{1} << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  else if (bytes >= (uint64_t{1} << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  else if (bytes >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(bytes) / 1024);
  else std::snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(bytes));
  return buf;
}

}  // namespace

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  return bytes < kSmallLimit ? round_up(bytes, kSmallGranule) : round_up(bytes, kLargeGranule);
}

void* CachingAllocator::device_malloc(size_t bytes) {
  void* ptr = nullptr;
  const cudaError_t err = cudaMalloc(&ptr, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // out of memory is an answer, not an error for later calls
    return nullptr;
  }
  if (err != cudaSuccess) fail_cuda(err, "cudaMalloc of " + gib_text(bytes) + " on cuda:" + std::to_string(device_));
  return ptr;
}

void* CachingAllocator::allocate(size_t bytes) {
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = free_blocks_.lower_bound(size);
  if (it != free_blocks_.end() && it->first <= largest_fit(size)) {
    void* ptr = it->second;
    live_sizes_[ptr] = it->first;
    cached_ -= it->first;
    free_blocks_.erase(it);
    return ptr;
  }
  void* ptr = device_malloc(size);
  if (ptr == nullptr) {
    // Cached blocks of other sizes may be what the device lacks: give them back and try once more.
    released_for_last_failure_ = release_cached_locked();
    ptr = device_malloc(size);
    if (ptr == nullptr) return nullptr;
  }
  live_sizes_[ptr] = size;
  return ptr;
}

void CachingAllocator::free(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_sizes_.find(ptr);
  if (it == live_sizes_.end()) return;  // not ours: nothing safe to do (a bug elsewhere)
  free_blocks_.emplace(it->second, ptr);
  cached_ += it->second;
  live_sizes_.erase(it);
}

uint64_t CachingAllocator::cached_bytes() {
  std::lock_guard<std::mutex> lock(mutex_);
  return cached_;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_locked();
}

uint64_t CachingAllocator::release_cached_locked() {
  const uint64_t released = cached_;
  if (free_blocks_.empty()) return 0;
  // cudaFree waits for the device, so blocks whose last kernels are still queued are safe to free.
  if (cudaSetDevice(device_) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  for (const auto& block : free_blocks_) {
    if (cudaFree(block.second) != cudaSuccess) cudaGetLastError();  // a broken context: nothing to recover
  }
  free_blocks_.clear();
  cached_ = 0;
  return released;
}

std::string CachingAllocator::out_of_memory_text(size_t bytes, const std::string& what) {
  size_t free_b = 0, total_b = 0;
  if (cudaSetDevice(device_) != cudaSuccess || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) cudaGetLastError();
  uint64_t released;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    released = released_for_last_failure_;
  }
  return "cuda:" + std::to_string(device_) + ": out of memory allocating " + gib_text(bytes) + " for " + what +
         " (free " + gib_text(free_b) + " of " + gib_text(total_b) + "; " + gib_text(released) +
         " cached by Imprint was released first)";
}

CachingAllocator& caching_allocator(int index) {
  // One per device for the life of the process; never destroyed, so nothing
  // calls CUDA during static destruction.
  static std::mutex mutex;
  static std::vector<CachingAllocator*>* allocators = new std::vector<CachingAllocator*>();
  std::lock_guard<std::mutex> lock(mutex);
  if (index < 0) fail(ErrorCode::Internal, "caching_allocator: negative device index");
  if (allocators->size() <= static_cast<size_t>(index)) allocators->resize(static_cast<size_t>(index) + 1, nullptr);
  CachingAllocator*& allocator = (*allocators)[static_cast<size_t>(index)];
  if (allocator == nullptr) allocator = new CachingAllocator(index);
  return *allocator;
}

DeviceScratch::DeviceScratch(size_t bytes, const char* what) {
  if (bytes == 0) return;
  int index = 0;
  IMPRINT_CUDA_CHECK(cudaGetDevice(&index));
  allocator_ = &caching_allocator(index);
  ptr_ = allocator_->allocate(bytes);
  if (ptr_ == nullptr) fail(ErrorCode::OutOfMemory, allocator_->out_of_memory_text(bytes, what));
}

DeviceScratch::~DeviceScratch() {
  if (allocator_ != nullptr) allocator_->free(ptr_);
}

}  // namespace cuda
}  // namespace imprint
