// Data movement without arithmetic on the GPU: concat and split along one dim
// (csrc/cpu/misc_concat.cc) and the head swap [a, b, c, d] → [a, c, b, d]
// (csrc/cpu/permute.cc). All of them copy runs of bytes, so they take any
// dtype; each copy moves the widest word (up to 16 bytes) that every address
// and run length involved is a multiple of.
#include <cstdint>

#include "core/args/misc.h"
#include "core/args/permute.h"
#include "core/dtype.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

// The widest power-of-two word size, at most 16, dividing `bits` (the OR of
// every address and byte count the copy uses).
int word_size(uint64_t bits) {
  for (int w = 16; w > 1; w /= 2)
    if (bits % static_cast<uint64_t>(w) == 0) return w;
  return 1;
}

uint64_t address_bits(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }

// `rows` runs of row_words words: run r goes from src + r·src_pitch to dst +
// r·dst_pitch (pitches in words).
template <class W>
__global__ void copy_runs(const W* src, int64_t src_pitch, W* dst, int64_t dst_pitch, int64_t rows, int64_t row_words) {
  const int64_t total = rows * row_words;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = e / row_words, k = e - r * row_words;
    dst[r * dst_pitch + k] = src[r * src_pitch + k];
  }
}

template <class W>
void launch_runs(const void* src, int64_t src_pitch_bytes, void* dst, int64_t dst_pitch_bytes, int64_t rows,
                 int64_t row_bytes, const char* kernel) {
  const int64_t w = static_cast<int64_t>(sizeof(W));
  copy_runs<W><<<grid_size(rows * (row_bytes / w)), kThreads, 0, current_stream()>>>(
      static_cast<const W*>(src), src_pitch_bytes / w, static_cast<W*>(dst), dst_pitch_bytes / w, rows, row_bytes / w);
  check_launch(kernel);
}

// Copies rows × row_bytes between two pitched layouts with the widest word that fits.
void copy_pitched(const void* src, int64_t src_pitch, void* dst, int64_t dst_pitch, int64_t rows, int64_t row_bytes,
                  const char* kernel) {
  if (rows == 0 || row_bytes == 0) return;
  const uint64_t bits = address_bits(src) | address_bits(dst) | static_cast<uint64_t>(src_pitch) |
                        static_cast<uint64_t>(dst_pitch) | static_cast<uint64_t>(row_bytes);
  switch (word_size(bits)) {
    case 16: launch_runs<uint4>(src, src_pitch, dst, dst_pitch, rows, row_bytes, kernel); break;
    case 8: launch_runs<uint2>(src, src_pitch, dst, dst_pitch, rows, row_bytes, kernel); break;
    case 4: launch_runs<uint32_t>(src, src_pitch, dst, dst_pitch, rows, row_bytes, kernel); break;
    case 2: launch_runs<uint16_t>(src, src_pitch, dst, dst_pitch, rows, row_bytes, kernel); break;
    default: launch_runs<uint8_t>(src, src_pitch, dst, dst_pitch, rows, row_bytes, kernel); break;
  }
}

// Piece i is [outer, piece_cols[i]]; it sits at column offset_i of the whole [outer, total_cols].
void concat_forward_cuda(const ConcatArgs& a) {
  const int64_t es = static_cast<int64_t>(a.elem_size);
  int64_t offset = 0;
  for (size_t i = 0; i < a.pieces.size(); ++i) {
    copy_pitched(a.pieces[i], a.piece_cols[i] * es, static_cast<char*>(a.whole) + offset * es, a.total_cols * es,
                 a.outer, a.piece_cols[i] * es, "concat_forward");
    offset += a.piece_cols[i];
  }
}

void split_forward_cuda(const SplitArgs& a) {
  const int64_t es = static_cast<int64_t>(a.elem_size);
  int64_t offset = 0;
  for (size_t i = 0; i < a.pieces.size(); ++i) {
    copy_pitched(static_cast<const char*>(a.whole) + offset * es, a.total_cols * es, a.pieces[i], a.piece_cols[i] * es,
                 a.outer, a.piece_cols[i] * es, "split_forward");
    offset += a.piece_cols[i];
  }
}

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

IMPRINT_REGISTER_KERNEL(concat_forward, CUDA, ConcatArgs, cuda::concat_forward_cuda);
IMPRINT_REGISTER_KERNEL(split_forward, CUDA, SplitArgs, cuda::split_forward_cuda);
IMPRINT_REGISTER_KERNEL(swap_dims12, CUDA, SwapDims12Args, cuda::swap_dims12_cuda);

}  // namespace imprint
