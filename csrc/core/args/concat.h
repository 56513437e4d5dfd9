// Launch descriptions for concat and split along one dim, shared by the CPU
// kernels (csrc/cpu/concat.cc) and the CUDA ones (cuda/concat.cu). The plans
// in csrc/ops/concat.cc validate shapes and fill these.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace imprint {

// Pieces laid side by side along one dim. Seen as 2-D: every tensor is
// [outer, cols] with cols = size along the dim × the trailing dims' product,
// so piece i occupies columns [offset_i, offset_i + piece_cols[i]) of whole.
// Copies are by element size: concat and split move any dtype.
struct ConcatArgs {
  size_t elem_size;
  std::vector<const void*> pieces;
  std::vector<int64_t> piece_cols;
  void* whole;
  int64_t outer, total_cols;
};

struct SplitArgs {
  size_t elem_size;
  const void* whole;
  std::vector<void*> pieces;
  std::vector<int64_t> piece_cols;
  int64_t outer, total_cols;
};

}  // namespace imprint
