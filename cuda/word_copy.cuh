// Copies by the widest word, for the kernels that only move bytes (concat.cu,
// permute.cu): they take any dtype, and each copy moves the widest word (up
// to 16 bytes) that every address and run length involved is a multiple of.
#pragma once
#include <cstdint>

namespace imprint {
namespace cuda {

// The widest power-of-two word size, at most 16, dividing `bits` (the OR of
// every address and byte count the copy uses).
inline int word_size(uint64_t bits) {
  for (int w = 16; w > 1; w /= 2)
    if (bits % static_cast<uint64_t>(w) == 0) return w;
  return 1;
}

inline uint64_t address_bits(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }

}  // namespace cuda
}  // namespace imprint
