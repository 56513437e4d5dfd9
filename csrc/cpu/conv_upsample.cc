// Nearest-neighbour 2x upsampling on the CPU: each input pixel fills a 2x2
// block; the backward sums each 2x2 block of dy. Rows are independent, so the
// work splits over (plane, row) pairs.
#include "core/args/conv.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/nn_util.h"

#include <algorithm>

namespace imprint {
namespace cpu {
namespace {

// Rows per pool chunk: about 16K output floats.
int64_t row_grain(int64_t w) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, 4 * w)); }

void upsample_nearest2x_forward_cpu(const UpsampleNearest2xArgs& a) {
  require_f32("upsample_nearest2x_forward", a.dtype);
  const float* x = static_cast<const float*>(a.src);
  float* y = static_cast<float*>(a.dst);
  const int64_t w = a.w;
  // Input row r (of all planes' rows) becomes output rows 2r and 2r + 1, each 2w wide.
  parallel_for(a.planes * a.h, row_grain(w), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = x + r * w;
      float* top = y + r * 4 * w;
      for (int64_t j = 0; j < w; ++j) {
        top[2 * j] = src[j];
        top[2 * j + 1] = src[j];
      }
      std::copy(top, top + 2 * w, top + 2 * w);
    }
  });
}

void upsample_nearest2x_backward_cpu(const UpsampleNearest2xArgs& a) {
  require_f32("upsample_nearest2x_backward", a.dtype);
  const float* dy = static_cast<const float*>(a.src);
  float* dx = static_cast<float*>(a.dst);
  const int64_t w = a.w;
  parallel_for(a.planes * a.h, row_grain(w), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* top = dy + r * 4 * w;
      const float* bottom = top + 2 * w;
      float* out = dx + r * w;
      // Summed in output-pixel order, as PyTorch does.
      for (int64_t j = 0; j < w; ++j) out[j] = ((top[2 * j] + top[2 * j + 1]) + bottom[2 * j]) + bottom[2 * j + 1];
    }
  });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(upsample_nearest2x_forward, CPU, UpsampleNearest2xArgs, upsample_nearest2x_forward_cpu);
IMPRINT_REGISTER_KERNEL(upsample_nearest2x_backward, CPU, UpsampleNearest2xArgs, upsample_nearest2x_backward_cpu);

}  // namespace cpu
}  // namespace imprint
