// A caching allocator for large host blocks. Ops return new tensors, so a
// training step frees and allocates the same sizes again and again; with plain
// malloc, glibc hands large blocks back to the OS and every reuse page-faults
// (measured: 1-2 ms per 5 MB output, 6x slower AdamW steps). Freed blocks of
// 1 MiB and more are kept, by size class, up to a cap (IMPRINT_CPU_CACHE_BYTES,
// default min(2 GiB, a quarter of RAM)), and handed out again.
#pragma once
#include <cstddef>
#include <cstdint>

namespace imprint {
namespace cpu {

void* host_allocate(size_t bytes);  // nullptr when the host has no room
void host_free(void* ptr, size_t bytes);
uint64_t host_cached_bytes();
void host_empty_cache();

}  // namespace cpu
}  // namespace imprint
