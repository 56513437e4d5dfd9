// Long sums for the loss and gradient-norm kernels: f32 partial sums over short
// runs, which the compiler vectorises, added in double across runs; blocks of
// fixed size summed in parallel and combined in block order, so the result
// does not depend on the thread count.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace imprint {
namespace cpu {

constexpr int kSumLanes = 16;
constexpr int64_t kSumRun = 256;       // 16 f32 additions per lane before going to double
constexpr int64_t kSumBlock = 1 << 16; // elements per parallel block

// Σ term(i) for i in [i0, i1); `term` is an inlinable lambda returning float.
template <class Term>
inline double run_sum(int64_t i0, int64_t i1, const Term& term) {
  double total = 0;
  int64_t i = i0;
  for (; i + kSumRun <= i1; i += kSumRun) {
    float lanes[kSumLanes] = {};
    for (int64_t j = 0; j < kSumRun; j += kSumLanes)
      for (int k = 0; k < kSumLanes; ++k) lanes[k] += term(i + j + k);
    double run = 0;
    for (int k = 0; k < kSumLanes; ++k) run += lanes[k];
    total += run;
  }
  for (; i < i1; ++i) total += term(i);
  return total;
}

// Σ block_sum(b) for b in [0, nblocks), blocks computed in parallel and added in order.
template <class BlockSum>
double blocked_sum(int64_t nblocks, const BlockSum& block_sum) {
  std::vector<double> partial(static_cast<size_t>(std::max<int64_t>(nblocks, 0)));
  parallel_for(nblocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) partial[b] = block_sum(b);
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

// Σ term(i) for i in [0, n) in blocks of kSumBlock.
template <class Term>
double flat_sum(int64_t n, const Term& term) {
  return blocked_sum((n + kSumBlock - 1) / kSumBlock, [&](int64_t b) {
    return run_sum(b * kSumBlock, std::min(n, (b + 1) * kSumBlock), term);
  });
}

}  // namespace cpu
}  // namespace imprint
