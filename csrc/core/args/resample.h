// Launch descriptions for nearest-neighbour resizing (any size, and the exact
// 2x of the UNet's and VAE's upsamplers) over NCHW planes, shared by the CPU
// kernels (csrc/cpu/resample.cc) and the CUDA ones (cuda/resample.cu). The
// plans in csrc/ops/resample.cc validate shapes and fill these.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace imprint {

// Nearest-neighbour resize to any size, as F.interpolate(mode='nearest'):
// output index o reads input index min(floor(o·(in/out)), in − 1), the scale
// a float as PyTorch computes it.
// Forward: src [planes, in_h, in_w] → dst [planes, out_h, out_w].
// Backward: src (dy) [planes, out_h, out_w] → dst (dx) [planes, in_h, in_w],
// each dx entry the sum of the dy entries that read it.
struct UpsampleNearestArgs {
  DType dtype;
  const void* src;
  void* dst;
  int64_t planes, in_h, in_w, out_h, out_w;
};

// Forward: src [planes, h, w] → dst [planes, 2h, 2w].
// Backward: src (dy) [planes, 2h, 2w] → dst (dx) [planes, h, w].
// planes = n·c; h and w are always the small (input) side's sizes.
struct UpsampleNearest2xArgs {
  DType dtype;
  const void* src;
  void* dst;
  int64_t planes, h, w;
};

}  // namespace imprint
