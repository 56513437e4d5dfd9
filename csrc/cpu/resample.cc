// Nearest-neighbour resizing on the CPU. Any size (UpsampleNearestArgs):
// index tables per axis, then planes in parallel; the backward accumulates
// each plane in output order, as PyTorch's CPU kernel does. The exact 2x of
// the UNet's and VAE's upsamplers (UpsampleNearest2xArgs): each input pixel
// fills a 2x2 block, the backward sums each 2x2 block of dy; rows are
// independent, so the work splits over (plane, row) pairs.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/args/resample.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/nn_util.h"

namespace imprint {
namespace cpu {
namespace {

// PyTorch's nearest_idx: exact for the same size and for 2x, else floor(o·scale) with a float scale.
std::vector<int64_t> source_index(int64_t in, int64_t out) {
  std::vector<int64_t> idx(out);
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t o = 0; o < out; ++o) {
    if (in == out) idx[o] = o;
    else if (out == 2 * in) idx[o] = o >> 1;
    else idx[o] = std::min(static_cast<int64_t>(std::floor(static_cast<float>(o) * scale)), in - 1);
  }
  return idx;
}

// Planes per pool chunk: about 16K output floats.
int64_t plane_grain(int64_t plane_size) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, plane_size)); }

void upsample_nearest_forward_cpu(const UpsampleNearestArgs& a) {
  require_f32("upsample_nearest_forward", a.dtype);
  const float* x = static_cast<const float*>(a.src);
  float* y = static_cast<float*>(a.dst);
  const std::vector<int64_t> rows = source_index(a.in_h, a.out_h), cols = source_index(a.in_w, a.out_w);
  const int64_t in_size = a.in_h * a.in_w, out_size = a.out_h * a.out_w;
  parallel_for(a.planes, plane_grain(out_size), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      for (int64_t i = 0; i < a.out_h; ++i) {
        const float* src = x + p * in_size + rows[i] * a.in_w;
        float* dst = y + p * out_size + i * a.out_w;
        for (int64_t j = 0; j < a.out_w; ++j) dst[j] = src[cols[j]];
      }
    }
  });
}

void upsample_nearest_backward_cpu(const UpsampleNearestArgs& a) {
  require_f32("upsample_nearest_backward", a.dtype);
  const float* dy = static_cast<const float*>(a.src);
  float* dx = static_cast<float*>(a.dst);
  const std::vector<int64_t> rows = source_index(a.in_h, a.out_h), cols = source_index(a.in_w, a.out_w);
  const int64_t in_size = a.in_h * a.in_w, out_size = a.out_h * a.out_w;
  parallel_for(a.planes, plane_grain(out_size), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float* plane = dx + p * in_size;
      std::fill(plane, plane + in_size, 0.0f);
      for (int64_t i = 0; i < a.out_h; ++i) {
        const float* src = dy + p * out_size + i * a.out_w;
        float* dst = plane + rows[i] * a.in_w;
        for (int64_t j = 0; j < a.out_w; ++j) dst[cols[j]] += src[j];
      }
    }
  });
}

// ---- exact 2x ------------------------------------------------------------

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

IMPRINT_REGISTER_KERNEL(upsample_nearest_forward, CPU, UpsampleNearestArgs, upsample_nearest_forward_cpu);
IMPRINT_REGISTER_KERNEL(upsample_nearest_backward, CPU, UpsampleNearestArgs, upsample_nearest_backward_cpu);
IMPRINT_REGISTER_KERNEL(upsample_nearest2x_forward, CPU, UpsampleNearest2xArgs, upsample_nearest2x_forward_cpu);
IMPRINT_REGISTER_KERNEL(upsample_nearest2x_backward, CPU, UpsampleNearest2xArgs, upsample_nearest2x_backward_cpu);

}  // namespace cpu
}  // namespace imprint
