// The tuning encoder's vocabulary kernels on the CPU (DESIGN.md §1.3): row
// norms, the k nearest vocabulary tokens of each query by cosine similarity,
// and the contrastive nearest-neighbour loss with its gradient. All three
// read f32/f16/bf16 and compute in f32; cuda/method_token_search.cu mirrors them.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/args/method.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/element.h"

namespace imprint {
namespace cpu {
namespace {

// Dot product in eight interleaved f32 partial sums (so the loop vectorises
// under strict IEEE order), added pairwise at the end.
float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  }
  for (; i < n; ++i) acc[i & 7] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <class T>
std::vector<float> load_rows(const void* x, int64_t rows, int64_t dim) {
  std::vector<float> out(static_cast<size_t>(rows * dim));
  for (int64_t r = 0; r < rows; ++r) load_span(static_cast<const T*>(x) + r * dim, dim, out.data() + r * dim);
  return out;
}

float norm_of(const float* row, int64_t dim) { return std::sqrt(dot(row, row, dim)); }

// 1/‖x‖, or 0 for a zero row (its cosines and gradients are then 0; a NaN stays NaN).
float inverse_norm(float norm) { return norm == 0 ? 0.0f : 1.0f / norm; }

// The cosine of two rows from their dot product and norms, as the CUDA kernel rounds it.
float cosine(float dot_product, float norm_a, float norm_b) {
  const float denom = norm_a * norm_b;
  return denom == 0 ? 0.0f : dot_product / denom;
}

template <class T>
void row_norms(const RowNormsArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  parallel_for(a.rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, a.dim)), [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(a.dim));
    for (int64_t r = begin; r < end; ++r) {
      load_span(x + r * a.dim, a.dim, row.data());
      a.norms[r] = norm_of(row.data(), a.dim);
    }
  });
}

void token_vocab_norms_cpu(const RowNormsArgs& a) {
  switch (a.dtype) {
    case DType::F32: row_norms<float>(a); break;
    case DType::F16: row_norms<f16_t>(a); break;
    case DType::BF16: row_norms<bf16_t>(a); break;
    default: fail(ErrorCode::DtypeMismatch, "token_vocab_norms: vocab must be f32, f16 or bf16");
  }
}

// Similarity order: higher first, equal similarities by lower index. A NaN
// (from non-finite inputs) ranks as -inf, so the order stays a strict weak one.
struct Candidate {
  float sim;
  int32_t index;
};
float rank_key(float sim) { return std::isnan(sim) ? -INFINITY : sim; }
bool ranks_before(const Candidate& x, const Candidate& y) {
  const float a = rank_key(x.sim), b = rank_key(y.sim);
  return a > b || (a == b && x.index < y.index);
}

template <class T>
void token_topk(const TokenTopkArgs& a) {
  const int64_t B = a.batch, V = a.vocab_size, D = a.dim, K = a.k;
  const std::vector<float> queries = load_rows<T>(a.queries, B, D);
  std::vector<float> query_norms(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) query_norms[b] = norm_of(queries.data() + b * D, D);
  std::vector<float> computed_norms;
  const float* vocab_norms = a.vocab_norms;
  if (!vocab_norms) {
    computed_norms.resize(static_cast<size_t>(V));
    row_norms<T>(RowNormsArgs{a.dtype, a.vocab, computed_norms.data(), V, D});
    vocab_norms = computed_norms.data();
  }
  // Every similarity, [B, V]: each vocabulary row is widened once and met by all queries.
  std::vector<float> sims(static_cast<size_t>(B * V));
  const T* vocab = static_cast<const T*>(a.vocab);
  parallel_for(V, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, D * B)), [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(D));
    for (int64_t v = begin; v < end; ++v) {
      load_span(vocab + v * D, D, row.data());
      for (int64_t b = 0; b < B; ++b) {
        sims[b * V + v] = cosine(dot(queries.data() + b * D, row.data(), D), query_norms[b], vocab_norms[v]);
      }
    }
  });
  parallel_for(B, 1, [&](int64_t begin, int64_t end) {
    std::vector<Candidate> all(static_cast<size_t>(V));
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t v = 0; v < V; ++v) all[v] = Candidate{sims[b * V + v], static_cast<int32_t>(v)};
      std::partial_sort(all.begin(), all.begin() + K, all.end(), ranks_before);
      for (int64_t j = 0; j < K; ++j) {
        a.indices[b * K + j] = all[j].index;
        a.similarities[b * K + j] = all[j].sim;
      }
    }
  });
}

void token_topk_cosine_cpu(const TokenTopkArgs& a) {
  switch (a.dtype) {
    case DType::F32: token_topk<float>(a); break;
    case DType::F16: token_topk<f16_t>(a); break;
    case DType::BF16: token_topk<bf16_t>(a); break;
    default: fail(ErrorCode::DtypeMismatch, "token_topk_cosine: queries must be f32, f16 or bf16");
  }
}

// The loss's pieces, shared by forward and backward. Logit row b holds
// [k positives | B in-batch negatives]; the negative at c == b is not a term.
struct ContrastiveTerms {
  std::vector<float> queries, neighbours;        // widened inputs
  std::vector<float> query_inv, neighbour_inv;   // 1/‖row‖ (0 for zero rows)
  std::vector<float> logits;                     // [B, k + B]
};

template <class T>
ContrastiveTerms contrastive_terms(const ContrastiveNnArgs& a) {
  const int64_t B = a.batch, K = a.k, D = a.dim, W = K + B;
  ContrastiveTerms t;
  t.queries = load_rows<T>(a.queries, B, D);
  t.neighbours = load_rows<T>(a.neighbours, B * K, D);
  t.query_inv.resize(static_cast<size_t>(B));
  t.neighbour_inv.resize(static_cast<size_t>(B * K));
  for (int64_t b = 0; b < B; ++b) t.query_inv[b] = inverse_norm(norm_of(t.queries.data() + b * D, D));
  for (int64_t r = 0; r < B * K; ++r) t.neighbour_inv[r] = inverse_norm(norm_of(t.neighbours.data() + r * D, D));
  const float inv_temp = static_cast<float>(1.0 / a.temperature);
  t.logits.assign(static_cast<size_t>(B * W), 0.0f);
  parallel_for(B * W, 64, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      const int64_t b = e / W, j = e % W;
      const float* q = t.queries.data() + b * D;
      if (j < K) {
        const float* n = t.neighbours.data() + (b * K + j) * D;
        t.logits[e] = dot(q, n, D) * t.query_inv[b] * t.neighbour_inv[b * K + j] * inv_temp;
      } else if (j - K != b) {
        const int64_t c = j - K;
        t.logits[e] = dot(q, t.queries.data() + c * D, D) * t.query_inv[b] * t.query_inv[c] * inv_temp;
      }
    }
  });
  return t;
}

// Row b's two log-sum-exps, each shifted by its own largest term so neither
// underflows at small temperatures: all terms (max_all, sum_all) and the
// positives alone (max_pos, sum_pos). L_b = log Σ_all − log Σ_pos.
struct RowSoftmax {
  float max_all, sum_all, max_pos, sum_pos;
  float loss() const { return (max_all + std::log(sum_all)) - (max_pos + std::log(sum_pos)); }
};

RowSoftmax row_softmax(const float* logits, int64_t b, int64_t K, int64_t B) {
  float mp = logits[0];
  for (int64_t j = 1; j < K; ++j) mp = std::max(mp, logits[j]);
  float m = mp;
  for (int64_t c = 0; c < B; ++c) {
    if (c != b) m = std::max(m, logits[K + c]);
  }
  float sp = 0, sa = 0;
  for (int64_t j = 0; j < K; ++j) {
    sp += std::exp(logits[j] - mp);
    sa += std::exp(logits[j] - m);
  }
  for (int64_t c = 0; c < B; ++c) {
    if (c != b) sa += std::exp(logits[K + c] - m);
  }
  return {m, sa, mp, sp};
}

template <class T>
void contrastive_forward(const ContrastiveNnArgs& a) {
  const int64_t B = a.batch, K = a.k, W = K + B;
  const ContrastiveTerms t = contrastive_terms<T>(a);
  float sum = 0;
  for (int64_t b = 0; b < B; ++b) {
    const RowSoftmax s = row_softmax(t.logits.data() + b * W, b, K, B);
    sum += s.loss();
  }
  *static_cast<float*>(a.out) = sum / static_cast<float>(B);
}

template <class T>
void contrastive_backward(const ContrastiveNnArgs& a) {
  const int64_t B = a.batch, K = a.k, D = a.dim, W = K + B;
  const ContrastiveTerms t = contrastive_terms<T>(a);
  // coef[b, j] = d(mean loss)/d(logit[b, j]) · grad_scale / temperature, i.e.
  // the weight of the unit vector behind logit j in the gradient of q̂_b.
  const float scale = static_cast<float>(a.grad_scale / (a.temperature * static_cast<double>(B)));
  std::vector<float> coef(static_cast<size_t>(B * W), 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    const float* l = t.logits.data() + b * W;
    const RowSoftmax s = row_softmax(l, b, K, B);
    for (int64_t j = 0; j < K; ++j) {
      coef[b * W + j] = (std::exp(l[j] - s.max_all) / s.sum_all - std::exp(l[j] - s.max_pos) / s.sum_pos) * scale;
    }
    for (int64_t c = 0; c < B; ++c) {
      if (c != b) coef[b * W + K + c] = std::exp(l[K + c] - s.max_all) / s.sum_all * scale;
    }
  }
  T* dq = static_cast<T*>(a.out);
  parallel_for(B, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> g(static_cast<size_t>(D));
    for (int64_t b = begin; b < end; ++b) {
      // g = ∂L/∂q̂_b: the positives n̂_bj, then q̂_c from both logits (b, c) and (c, b).
      std::fill(g.begin(), g.end(), 0.0f);
      for (int64_t j = 0; j < K; ++j) {
        const float w = coef[b * W + j], inv_n = t.neighbour_inv[b * K + j];
        const float* n = t.neighbours.data() + (b * K + j) * D;
        for (int64_t d = 0; d < D; ++d) g[d] += w * (n[d] * inv_n);
      }
      for (int64_t c = 0; c < B; ++c) {
        if (c == b) continue;
        const float w = coef[b * W + K + c] + coef[c * W + K + b], inv_c = t.query_inv[c];
        const float* qc = t.queries.data() + c * D;
        for (int64_t d = 0; d < D; ++d) g[d] += w * (qc[d] * inv_c);
      }
      // Through q̂ = q/‖q‖: dq = (g − q̂(q̂·g)) / ‖q‖.
      const float* q = t.queries.data() + b * D;
      const float inv = t.query_inv[b];
      const float radial = dot(q, g.data(), D) * inv;
      for (int64_t d = 0; d < D; ++d) dq[b * D + d] = store<T>((g[d] - q[d] * inv * radial) * inv);
    }
  });
}

void contrastive_nn_loss_forward_cpu(const ContrastiveNnArgs& a) {
  switch (a.dtype) {
    case DType::F32: contrastive_forward<float>(a); break;
    case DType::F16: contrastive_forward<f16_t>(a); break;
    case DType::BF16: contrastive_forward<bf16_t>(a); break;
    default: fail(ErrorCode::DtypeMismatch, "contrastive_nn_loss_forward: queries must be f32, f16 or bf16");
  }
}

void contrastive_nn_loss_backward_cpu(const ContrastiveNnArgs& a) {
  switch (a.dtype) {
    case DType::F32: contrastive_backward<float>(a); break;
    case DType::F16: contrastive_backward<f16_t>(a); break;
    case DType::BF16: contrastive_backward<bf16_t>(a); break;
    default: fail(ErrorCode::DtypeMismatch, "contrastive_nn_loss_backward: queries must be f32, f16 or bf16");
  }
}

}  // namespace

IMPRINT_REGISTER_KERNEL(token_vocab_norms, CPU, RowNormsArgs, token_vocab_norms_cpu);
IMPRINT_REGISTER_KERNEL(token_topk_cosine, CPU, TokenTopkArgs, token_topk_cosine_cpu);
IMPRINT_REGISTER_KERNEL(contrastive_nn_loss_forward, CPU, ContrastiveNnArgs, contrastive_nn_loss_forward_cpu);
IMPRINT_REGISTER_KERNEL(contrastive_nn_loss_backward, CPU, ContrastiveNnArgs, contrastive_nn_loss_backward_cpu);

}  // namespace cpu
}  // namespace imprint
