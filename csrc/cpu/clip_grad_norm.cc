// Gradient-norm clipping on the CPU, following PyTorch's clip_grad_norm_:
// partial norms over fixed blocks (run_sum, cpu/blocked_sum.h) computed in
// parallel and combined in block order, so the norm does not depend on the
// thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/args/clip_grad_norm.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/blocked_sum.h"
#include "cpu/nn_util.h"

namespace imprint {
namespace cpu {
namespace {

// One tensor's slice [begin, end) for the norm's fixed blocks.
struct Block {
  size_t tensor;
  int64_t begin, end;
};

double block_norm_part(const float* x, int64_t b, int64_t e, double norm_type) {
  if (norm_type == 2) return run_sum(b, e, [x](int64_t i) { return x[i] * x[i]; });
  if (norm_type == 1) return run_sum(b, e, [x](int64_t i) { return std::fabs(x[i]); });
  if (std::isinf(norm_type)) {
    // Max |x| in lanes; a NaN sticks (as torch's max propagates it).
    float lanes[kSumLanes] = {};
    int64_t i = b;
    for (; i + kSumLanes <= e; i += kSumLanes)
      for (int k = 0; k < kSumLanes; ++k) {
        const float ax = std::fabs(x[i + k]);
        lanes[k] = (ax > lanes[k] || ax != ax) ? ax : lanes[k];
      }
    for (; i < e; ++i) {
      const float ax = std::fabs(x[i]);
      lanes[0] = (ax > lanes[0] || ax != ax) ? ax : lanes[0];
    }
    double mx = 0;
    for (float l : lanes) mx = (l > mx || l != l) ? l : mx;
    return mx;
  }
  double s = 0;  // any other p: rare, so a pow per element is acceptable
  for (int64_t i = b; i < e; ++i) s += std::pow(std::fabs(static_cast<double>(x[i])), norm_type);
  return s;
}

void clip_grad_norm_cpu(const ClipGradNormArgs& a) {
  require_f32("clip_grad_norm", a.dtype);
  std::vector<Block> blocks;
  for (size_t t = 0; t < a.grads.size(); ++t)
    for (int64_t b = 0; b < a.numels[t]; b += kSumBlock) blocks.push_back({t, b, std::min(a.numels[t], b + kSumBlock)});
  const int64_t nblocks = static_cast<int64_t>(blocks.size());
  std::vector<double> part(blocks.size());
  parallel_for(nblocks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const Block& bl = blocks[k];
      part[k] = block_norm_part(static_cast<const float*>(a.grads[bl.tensor]), bl.begin, bl.end, a.norm_type);
    }
  });
  double total = 0;
  if (std::isinf(a.norm_type)) {
    for (double x : part) total = (x > total || x != x) ? x : total;
  } else {
    for (double x : part) total += x;
    total = a.norm_type == 2 ? std::sqrt(total) : a.norm_type == 1 ? total : std::pow(total, 1.0 / a.norm_type);
  }
  *static_cast<float*>(a.total_norm) = static_cast<float>(total);
  // torch.clamp(max=1) keeps a NaN coefficient (a NaN or infinite norm), so the grads show it.
  const double raw = a.max_norm / (total + 1e-6);
  const float coef = static_cast<float>(raw > 1.0 ? 1.0 : raw);
  parallel_for(nblocks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const Block& bl = blocks[k];
      const float* x = static_cast<const float*>(a.grads[bl.tensor]);
      float* y = static_cast<float*>(a.grads_out[bl.tensor]);
      for (int64_t i = bl.begin; i < bl.end; ++i) y[i] = x[i] * coef;
    }
  });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(clip_grad_norm, CPU, ClipGradNormArgs, clip_grad_norm_cpu);

}  // namespace cpu
}  // namespace imprint
