// Masked mean squared error on the CPU. loss = Σ (pred − target)²·mask / D
// with D = Σ mask over the mask broadcast to pred (numel without a mask);
// dpred = gradScale · 2 (pred − target)·mask / D. A zero D gives NaN, as in
// PyTorch's ((pred − target)²·mask).sum() / mask.expand_as(pred).sum().
#include <algorithm>

#include "core/args/loss.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/blocked_sum.h"
#include "cpu/nn_util.h"

namespace imprint {
namespace cpu {
namespace {

// The mask is walked row by row along the last coalesced dim.
struct MaskRows {
  int64_t cols, rows, stride;  // stride of the mask along a row: 0 (one value per row) or 1
};

MaskRows mask_rows(const MseLossArgs& a) {
  const int64_t cols = a.shape[a.ndim - 1];
  return {cols, cols == 0 ? 0 : a.numel / cols, a.mask_strides[a.ndim - 1]};
}

// Offset into the mask of the first element of row r.
int64_t mask_row_offset(const MseLossArgs& a, int64_t r) {
  int64_t off = 0;
  for (int d = a.ndim - 2; d >= 0; --d) {
    off += (r % a.shape[d]) * a.mask_strides[d];
    r /= a.shape[d];
  }
  return off;
}

// D: each mask element is repeated numel / mask_numel times by the broadcast.
double denominator(const MseLossArgs& a) {
  if (!a.mask) return static_cast<double>(a.numel);
  if (a.mask_numel == 0) return 0.0;
  const float* m = static_cast<const float*>(a.mask);
  const double mask_sum = flat_sum(a.mask_numel, [m](int64_t i) { return m[i]; });
  return mask_sum * static_cast<double>(a.numel / a.mask_numel);
}

void mse_loss_forward_cpu(const MseLossArgs& a) {
  require_f32("mse_loss_forward", a.dtype);
  const float* p = static_cast<const float*>(a.pred);
  const float* t = static_cast<const float*>(a.target);
  const float* m = static_cast<const float*>(a.mask);
  double num = 0;
  if (!m) {
    num = flat_sum(a.numel, [p, t](int64_t i) {
      const float d = p[i] - t[i];
      return d * d;
    });
  } else if (a.numel > 0) {
    const MaskRows mr = mask_rows(a);
    // Fixed groups of rows (about kSumBlock elements each) keep the sum deterministic.
    const int64_t group = std::max<int64_t>(1, kSumBlock / std::max<int64_t>(mr.cols, 1));
    num = blocked_sum((mr.rows + group - 1) / group, [&](int64_t g) {
      double s = 0;
      for (int64_t r = g * group; r < std::min(mr.rows, (g + 1) * group); ++r) {
        const float* pr = p + r * mr.cols;
        const float* tr = t + r * mr.cols;
        const float* mrow = m + mask_row_offset(a, r);
        if (mr.stride == 0) {
          const float mv = mrow[0];
          s += run_sum(0, mr.cols, [pr, tr, mv](int64_t j) {
            const float d = pr[j] - tr[j];
            return d * d * mv;
          });
        } else {
          const int64_t ms = mr.stride;
          s += run_sum(0, mr.cols, [pr, tr, mrow, ms](int64_t j) {
            const float d = pr[j] - tr[j];
            return d * d * mrow[j * ms];
          });
        }
      }
      return s;
    });
  }
  *static_cast<float*>(a.out) = static_cast<float>(num / denominator(a));
}

void mse_loss_backward_cpu(const MseLossArgs& a) {
  require_f32("mse_loss_backward", a.dtype);
  const float* p = static_cast<const float*>(a.pred);
  const float* t = static_cast<const float*>(a.target);
  const float* m = static_cast<const float*>(a.mask);
  float* dp = static_cast<float*>(a.out);
  if (a.numel == 0) return;
  const float coef = static_cast<float>(2.0 * a.grad_scale / denominator(a));
  if (!m) {
    parallel_for(a.numel, kSumBlock, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) dp[i] = coef * (p[i] - t[i]);
    });
    return;
  }
  const MaskRows mr = mask_rows(a);
  parallel_for(mr.rows, std::max<int64_t>(1, kSumBlock / std::max<int64_t>(mr.cols, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* pr = p + r * mr.cols;
      const float* tr = t + r * mr.cols;
      const float* mrow = m + mask_row_offset(a, r);
      float* out = dp + r * mr.cols;
      if (mr.stride == 0) {
        const float c = coef * mrow[0];
        for (int64_t j = 0; j < mr.cols; ++j) out[j] = c * (pr[j] - tr[j]);
      } else {
        const int64_t ms = mr.stride;
        for (int64_t j = 0; j < mr.cols; ++j) out[j] = coef * (pr[j] - tr[j]) * mrow[j * ms];
      }
    }
  });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(mse_loss_forward, CPU, MseLossArgs, mse_loss_forward_cpu);
IMPRINT_REGISTER_KERNEL(mse_loss_backward, CPU, MseLossArgs, mse_loss_backward_cpu);

}  // namespace cpu
}  // namespace imprint
