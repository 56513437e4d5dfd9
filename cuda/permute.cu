// The head swap [a, b, c, d] → [a, c, b, d] on the GPU (swap_dims12;
// csrc/cpu/permute.cc is the reference): a copy of d-element rows, so it
// takes any dtype; each copy moves the widest word that fits (word_copy.cuh).
#include <cstdint>

#include "core/args/permute.h"
#include "core/dtype.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "kernels.cuh"
#include "word_copy.cuh"

namespace imprint {
namespace cuda {
namespace {

// Output row r = ((i·c + k)·b + j) reads input row (i·b + j)·c + k; rows are row_words words.
template <class W>
__global__ void swap12_rows(const W* x, W* y, int64_t b, int64_t c, int64_t rows, int64_t row_words) {
  const int64_t total = rows * row_words;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = e / row_words, u = e - r * row_words;
    const int64_t j = r % b;
    const int64_t k = (r / b) % c;
    const int64_t i = r / (b * c);
    y[e] = x[((i * b + j) * c + k) * row_words + u];
  }
}

template <class W>
void launch_swap12(const SwapDims12Args& s, int64_t row_bytes) {
  const int64_t rows = s.a * s.b * s.c, row_words = row_bytes / static_cast<int64_t>(sizeof(W));
  swap12_rows<W><<<grid_size(rows * row_words), kThreads, 0, current_stream()>>>(
      static_cast<const W*>(s.x), static_cast<W*>(s.y), s.b, s.c, rows, row_words);
  check_launch("swap_dims12");
}

void swap_dims12_cuda(const SwapDims12Args& s) {
  const int64_t row_bytes = s.d * static_cast<int64_t>(dtype_size(s.dtype));
  if (row_bytes == 0 || s.a * s.b * s.c == 0) return;
  const uint64_t bits = address_bits(s.x) | address_bits(s.y) | static_cast<uint64_t>(row_bytes);
  switch (word_size(bits)) {
    case 16: launch_swap12<uint4>(s, row_bytes); break;
    case 8: launch_swap12<uint2>(s, row_bytes); break;
    case 4: launch_swap12<uint32_t>(s, row_bytes); break;
    case 2: launch_swap12<uint16_t>(s, row_bytes); break;
    default: launch_swap12<uint8_t>(s, row_bytes); break;
  }
}

}  // namespace
}  // namespace cuda

IMPRINT_REGISTER_KERNEL(swap_dims12, CUDA, SwapDims12Args, cuda::swap_dims12_cuda);

}  // namespace imprint
