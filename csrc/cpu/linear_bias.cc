// See linear_bias.h.
#include "cpu/linear_bias.h"

#include <algorithm>

#include "core/thread_pool.h"

namespace imprint {
namespace cpu {

void add_bias_rows(float* y, const float* b, int64_t rows, int64_t out) {
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(out, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < out; ++j) y[r * out + j] += b[j];
  });
}

void bias_grad(const float* dy, int64_t rows, int64_t out, float* db) {
  parallel_for(out, 64, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      double acc = 0;
      for (int64_t r = 0; r < rows; ++r) acc += dy[r * out + j];
      db[j] = static_cast<float>(acc);
    }
  });
}

}  // namespace cpu
}  // namespace imprint
