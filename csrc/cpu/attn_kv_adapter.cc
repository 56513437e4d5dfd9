// K/V adapters on the CPU: see attn_kv_adapter.h. Sums in double (rank and
// batch·keys terms), so the reference carries no rounding of its own.
#include "cpu/attn_kv_adapter.h"

#include "core/thread_pool.h"

namespace imprint {
namespace cpu {

std::vector<float> adapted_kv(const float* base, const float* delta, const float* u, const float* up, int64_t rank,
                              float scale, int64_t batch, int64_t heads, int64_t nk, int64_t dim) {
  std::vector<float> out(static_cast<size_t>(batch * heads * nk * dim));
  parallel_for(batch * heads, 1, [&](int64_t bh0, int64_t bh1) {
    for (int64_t bh = bh0; bh < bh1; ++bh) {
      const int64_t b = bh / heads, h = bh % heads;
      for (int64_t j = 0; j < nk; ++j) {
        const int64_t row = (bh * nk + j) * dim;
        for (int64_t c = 0; c < dim; ++c) {
          double v = base[row + c];
          if (delta) v += delta[row + c];
          if (u) {
            double lr = 0;
            for (int64_t t = 0; t < rank; ++t) lr += static_cast<double>(u[(b * nk + j) * rank + t]) * up[(h * dim + c) * rank + t];
            v += scale * lr;
          }
          out[row + c] = static_cast<float>(v);
        }
      }
    }
  });
  return out;
}

void kv_lora_grads(const float* g, const float* u, const float* up, int64_t rank, float scale, int64_t batch,
                   int64_t heads, int64_t nk, int64_t dim, float* du, float* dup) {
  parallel_for(batch * nk, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t bj = r0; bj < r1; ++bj) {
      const int64_t b = bj / nk, j = bj % nk;
      for (int64_t t = 0; t < rank; ++t) {
        double acc = 0;
        for (int64_t h = 0; h < heads; ++h)
          for (int64_t c = 0; c < dim; ++c) acc += static_cast<double>(g[((b * heads + h) * nk + j) * dim + c]) * up[(h * dim + c) * rank + t];
        du[bj * rank + t] = static_cast<float>(scale * acc);
      }
    }
  });
  parallel_for(heads * dim, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t hc = r0; hc < r1; ++hc) {
      const int64_t h = hc / dim, c = hc % dim;
      for (int64_t t = 0; t < rank; ++t) {
        double acc = 0;
        for (int64_t b = 0; b < batch; ++b)
          for (int64_t j = 0; j < nk; ++j) acc += static_cast<double>(g[((b * heads + h) * nk + j) * dim + c]) * u[(b * nk + j) * rank + t];
        dup[hc * rank + t] = static_cast<float>(scale * acc);
      }
    }
  });
}

}  // namespace cpu
}  // namespace imprint
