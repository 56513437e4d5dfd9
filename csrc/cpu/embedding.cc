// Token and timestep embeddings on the CPU: a row gather, its scatter-add
// gradient (optionally only into masked rows), and diffusers' sinusoidal
// timestep embedding.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/args/embedding.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/nn_util.h"

namespace imprint {
namespace cpu {
namespace {

// Reads the ids as int64 and checks every one against vocab before any row
// is touched: ids are data, so this is the only place they can be checked.
template <class Id>
std::vector<int64_t> read_ids(const char* op, const Id* ids, int64_t n, int64_t vocab) {
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = static_cast<int64_t>(ids[i]);
    if (id < 0 || id >= vocab) {
      fail(ErrorCode::InvalidArgument, std::string(op) + ": ids[" + std::to_string(i) + "] = " + std::to_string(id) +
                                           " is out of range for a table of " + std::to_string(vocab) +
                                           " rows (valid ids are 0 to " + std::to_string(vocab - 1) + ")");
    }
    out[i] = id;
  }
  return out;
}

std::vector<int64_t> checked_ids(const char* op, DType id_dtype, const void* ids, int64_t n, int64_t vocab) {
  if (id_dtype == DType::I32) return read_ids(op, static_cast<const int32_t*>(ids), n, vocab);
  return read_ids(op, static_cast<const int64_t*>(ids), n, vocab);
}

// Rows per parallel chunk so that a chunk moves about 64K floats.
int64_t row_grain(int64_t dim) { return std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(dim, 1)); }

void embedding_forward_cpu(const EmbeddingForwardArgs& a) {
  require_f32("embedding_forward", a.dtype);
  const std::vector<int64_t> ids = checked_ids("embedding_forward", a.id_dtype, a.ids, a.n, a.vocab);
  if (a.dim == 0) return;
  const float* table = static_cast<const float*>(a.table);
  float* out = static_cast<float*>(a.out);
  parallel_for(a.n, row_grain(a.dim), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) std::memcpy(out + i * a.dim, table + ids[i] * a.dim, a.dim * sizeof(float));
  });
}

void embedding_backward_cpu(const EmbeddingBackwardArgs& a) {
  require_f32("embedding_backward", a.dtype);
  const std::vector<int64_t> ids = checked_ids("embedding_backward", a.id_dtype, a.ids, a.n, a.vocab);
  const float* dy = static_cast<const float*>(a.dy);
  float* dtable = static_cast<float*>(a.dtable);
  if (a.dim == 0 || a.vocab == 0) return;
  // The dense gradient is almost all zeros; fill it in parallel (it is vocab × dim).
  parallel_for(a.vocab, row_grain(a.dim), [&](int64_t r0, int64_t r1) {
    std::memset(dtable + r0 * a.dim, 0, (r1 - r0) * a.dim * sizeof(float));
  });
  // Positions grouped by row (stable, so each row adds its dy rows in input
  // order); rows outside the mask are left out and stay zero.
  std::vector<int64_t> order;
  order.reserve(ids.size());
  for (int64_t i = 0; i < a.n; ++i)
    if (!a.row_mask || a.row_mask[ids[i]]) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return ids[x] < ids[y]; });
  std::vector<int64_t> starts;  // start of each row's run in `order`, then order.size()
  for (size_t k = 0; k < order.size(); ++k)
    if (k == 0 || ids[order[k]] != ids[order[k - 1]]) starts.push_back(static_cast<int64_t>(k));
  starts.push_back(static_cast<int64_t>(order.size()));
  const int64_t runs = static_cast<int64_t>(starts.size()) - 1;
  const int64_t dim = a.dim;
  parallel_for(runs, std::max<int64_t>(1, row_grain(dim) / 4), [&](int64_t r0, int64_t r1) {
    std::vector<double> acc(static_cast<size_t>(dim));  // a repeated id (padding) can sum many rows
    double* accp = acc.data();
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t k0 = starts[r], k1 = starts[r + 1];
      float* row = dtable + ids[order[k0]] * dim;
      if (k1 - k0 == 1) {
        std::memcpy(row, dy + order[k0] * dim, dim * sizeof(float));
        continue;
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t k = k0; k < k1; ++k) {
        const float* src = dy + order[k] * dim;
        for (int64_t c = 0; c < dim; ++c) accp[c] += src[c];
      }
      for (int64_t c = 0; c < dim; ++c) row[c] = static_cast<float>(accp[c]);
    }
  });
}

void timestep_embedding_forward_cpu(const TimestepEmbeddingArgs& a) {
  require_f32("timestep_embedding_forward", a.dtype);
  const float* t = static_cast<const float*>(a.timesteps);
  float* out = static_cast<float*>(a.out);
  const int64_t half = a.dim / 2;
  // Computed in double (diffusers computes in f32), so this is the accurate reference.
  std::vector<double> freq(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j)
    freq[j] = std::exp(-std::log(a.max_period) * static_cast<double>(j) / (static_cast<double>(half) - a.freq_shift));
  const int64_t sin_at = a.flip_sin_to_cos ? half : 0, cos_at = a.flip_sin_to_cos ? 0 : half;
  parallel_for(a.n, std::max<int64_t>(1, 4096 / std::max<int64_t>(a.dim, 1)), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float* row = out + i * a.dim;
      const double ti = t[i];
      for (int64_t j = 0; j < half; ++j) {
        const double arg = a.scale * (ti * freq[j]);
        row[sin_at + j] = static_cast<float>(std::sin(arg));
        row[cos_at + j] = static_cast<float>(std::cos(arg));
      }
      if (a.dim % 2 == 1) row[a.dim - 1] = 0.0f;  // odd dims are zero-padded at the end
    }
  });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(embedding_forward, CPU, EmbeddingForwardArgs, embedding_forward_cpu);
IMPRINT_REGISTER_KERNEL(embedding_backward, CPU, EmbeddingBackwardArgs, embedding_backward_cpu);
IMPRINT_REGISTER_KERNEL(timestep_embedding_forward, CPU, TimestepEmbeddingArgs, timestep_embedding_forward_cpu);

}  // namespace cpu
}  // namespace imprint
