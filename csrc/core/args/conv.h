// Launch descriptions for 2-D convolution (NCHW), shared by CPU and CUDA
// kernels. Nearest 2x upsampling is in core/args/resample.h.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace imprint {

// One convolution's sizes: x [n, cin, h, w] is padded by pad_* zeros, then
// weight [cout, cin, kh, kw] slides over it with `stride`, giving y [n, cout, ho, wo].
struct Conv2dGeometry {
  int64_t n, cin, h, w;
  int64_t cout, kh, kw;
  int64_t stride;
  int64_t pad_top, pad_bottom, pad_left, pad_right;
  int64_t ho, wo;
};

struct Conv2dForwardArgs {
  DType dtype;
  const void* x;     // [n, cin, h, w]
  const void* w;     // [cout, cin, kh, kw]
  const void* bias;  // [cout] or nullptr
  void* y;           // [n, cout, ho, wo]
  Conv2dGeometry g;
};

struct Conv2dBackwardArgs {
  DType dtype;
  const void* dy;  // [n, cout, ho, wo]
  const void* x;   // [n, cin, h, w]
  const void* w;   // [cout, cin, kh, kw]
  void* dx;        // [n, cin, h, w] or nullptr when not asked for
  void* dw;        // [cout, cin, kh, kw] or nullptr when not asked for
  void* dbias;     // [cout] or nullptr when not asked for
  Conv2dGeometry g;
};

}  // namespace imprint
