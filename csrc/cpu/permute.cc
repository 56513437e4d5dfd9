// swap_dims12 on the CPU: [a, b, c, d] → [a, c, b, d], a copy of d-element rows.
#include <algorithm>
#include <cstring>

#include "core/args/permute.h"
#include "core/dtype.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"

namespace imprint {
namespace cpu {
namespace {

void swap_dims12_cpu(const SwapDims12Args& s) {
  // Any dtype: the rows are moved as bytes.
  const size_t row = static_cast<size_t>(s.d) * dtype_size(s.dtype);
  const char* x = static_cast<const char*>(s.x);
  char* y = static_cast<char*>(s.y);
  if (row == 0) return;
  const int64_t rows = s.a * s.b * s.c;
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>((1 << 18) / row));
  // Output row r = ((i·c + k)·b + j) reads input row (i·b + j)·c + k.
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t j = r % s.b;
      const int64_t k = (r / s.b) % s.c;
      const int64_t i = r / (s.b * s.c);
      std::memcpy(y + r * row, x + ((i * s.b + j) * s.c + k) * row, row);
    }
  });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(swap_dims12, CPU, SwapDims12Args, swap_dims12_cpu);

}  // namespace cpu
}  // namespace imprint
