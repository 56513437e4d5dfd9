// concat and split along one dim on the GPU (csrc/cpu/concat.cc is the
// reference): both copy runs of bytes between the pieces and the whole, seen
// as 2-D [outer, cols] (ConcatArgs), so they take any dtype; each copy moves
// the widest word that fits (word_copy.cuh).
#include <cstdint>

#include "core/args/concat.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "kernels.cuh"
#include "word_copy.cuh"

namespace imprint {
namespace cuda {
namespace {

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

}  // namespace
}  // namespace cuda

IMPRINT_REGISTER_KERNEL(concat_forward, CUDA, ConcatArgs, cuda::concat_forward_cuda);
IMPRINT_REGISTER_KERNEL(split_forward, CUDA, SplitArgs, cuda::split_forward_cuda);

}  // namespace imprint
