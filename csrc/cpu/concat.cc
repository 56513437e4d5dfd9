// concat and split on the CPU: both move runs of bytes between the pieces and
// the whole, seen as 2-D [outer, cols] (see ConcatArgs). Any dtype.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/args/concat.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"

namespace imprint {
namespace cpu {
namespace {

constexpr int64_t kCopyGrain = 1 << 16;  // elements per parallel chunk

// Calls copy(piece, piece_element, whole_element, count) for every run of the
// whole's elements [e0, e1) that lies inside one piece.
template <class Copy>
void for_each_run(const std::vector<int64_t>& piece_cols, const std::vector<int64_t>& piece_start, int64_t total_cols,
                  int64_t e0, int64_t e1, const Copy& copy) {
  const size_t npieces = piece_cols.size();
  int64_t row = e0 / total_cols, col = e0 % total_cols;
  size_t p = std::upper_bound(piece_start.begin(), piece_start.end(), col) - piece_start.begin() - 1;
  for (int64_t e = e0; e < e1;) {
    while (col >= piece_start[p] + piece_cols[p]) {  // skip to the piece holding col (past empty ones)
      if (++p == npieces) {
        p = 0;
        col = 0;
        ++row;
      }
    }
    const int64_t within = col - piece_start[p];
    const int64_t count = std::min(piece_cols[p] - within, e1 - e);
    copy(p, row * piece_cols[p] + within, e, count);
    e += count;
    col += count;
  }
}

std::vector<int64_t> starts_of(const std::vector<int64_t>& piece_cols) {
  std::vector<int64_t> starts(piece_cols.size());
  int64_t s = 0;
  for (size_t i = 0; i < piece_cols.size(); ++i) {
    starts[i] = s;
    s += piece_cols[i];
  }
  return starts;
}

void concat_forward_cpu(const ConcatArgs& a) {
  const int64_t n = a.outer * a.total_cols;
  if (n == 0) return;
  const std::vector<int64_t> starts = starts_of(a.piece_cols);
  char* whole = static_cast<char*>(a.whole);
  const size_t es = a.elem_size;
  parallel_for(n, kCopyGrain, [&](int64_t e0, int64_t e1) {
    for_each_run(a.piece_cols, starts, a.total_cols, e0, e1, [&](size_t p, int64_t pe, int64_t we, int64_t count) {
      std::memcpy(whole + we * es, static_cast<const char*>(a.pieces[p]) + pe * es, count * es);
    });
  });
}

void split_forward_cpu(const SplitArgs& a) {
  const int64_t n = a.outer * a.total_cols;
  if (n == 0) return;
  const std::vector<int64_t> starts = starts_of(a.piece_cols);
  const char* whole = static_cast<const char*>(a.whole);
  const size_t es = a.elem_size;
  parallel_for(n, kCopyGrain, [&](int64_t e0, int64_t e1) {
    for_each_run(a.piece_cols, starts, a.total_cols, e0, e1, [&](size_t p, int64_t pe, int64_t we, int64_t count) {
      std::memcpy(static_cast<char*>(a.pieces[p]) + pe * es, whole + we * es, count * es);
    });
  });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(concat_forward, CPU, ConcatArgs, concat_forward_cpu);
IMPRINT_REGISTER_KERNEL(split_forward, CPU, SplitArgs, split_forward_cpu);

}  // namespace cpu
}  // namespace imprint
