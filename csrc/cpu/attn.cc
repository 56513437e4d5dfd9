// Fused scaled-dot-product attention on the CPU, flash-attention style: the
// [Nq, Nk] score matrix is never materialised. Queries go in blocks against
// blocks of keys with an online softmax; the block products run through sgemm
// single-threaded inside parallel_for tasks. Exponentials are base 2 with
// log2(e) folded into the scale, so the inner loop is one polynomial.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/args/attn.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/blas.h"
#include "cpu/nn_util.h"

namespace imprint {
namespace cpu {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Query rows × keys per score block. Measured on SD shapes (D 40-160): the
// forward is flat from 32×128 to 128×512; the backward, with five products
// per block, runs ~15% faster at 128×128 than at 64×64.
constexpr int64_t kFwdBlockQ = 64, kFwdBlockK = 256;
constexpr int64_t kBwdBlockQ = 128, kBwdBlockK = 128;

// The row kernels below (max, exp, sum over a score row) use GCC/Clang vector
// extensions: plain loops with selects in them do not vectorise under GCC's
// default -ftrapping-math, and these loops are the softmax's whole cost.
// Four lanes map onto SSE2 and NEON, the baselines the addon is built for.
typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x4 __attribute__((vector_size(16)));

inline f32x4 load4(const float* p) {
  f32x4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float* p, f32x4 v) { std::memcpy(p, &v, sizeof v); }
inline f32x4 broadcast4(float x) { return f32x4{x, x, x, x}; }
// Lanes of a where mask is set (all ones), else lanes of b.
inline f32x4 select4(i32x4 mask, f32x4 a, f32x4 b) { return (f32x4)((mask & (i32x4)a) | (~mask & (i32x4)b)); }

// 2^x per lane: 2^x = 2^n · 2^f with n = round(x) and f ∈ [-0.5, 0.5], 2^f by
// its degree-7 Taylor series (relative error below 1e-8). Below -126 the
// result flushes to 0 (masked scores are -inf); NaN stays NaN.
inline f32x4 exp2_4(f32x4 x) {
  const i32x4 underflow = x < broadcast4(-126.0f);
  f32x4 xc = select4(underflow, broadcast4(-126.0f), x);
  xc = select4(xc > broadcast4(127.0f), broadcast4(127.0f), xc);
  // Adding 1.5·2^23 rounds to an integer and leaves it in the low mantissa bits.
  const f32x4 shifted = xc + broadcast4(12582912.0f);
  const f32x4 f = xc - (shifted - broadcast4(12582912.0f));
  f32x4 p = broadcast4(1.5252733804059841e-05f);
  p = p * f + broadcast4(1.5403530393381608e-04f);
  p = p * f + broadcast4(1.3333558146428443e-03f);
  p = p * f + broadcast4(9.6181291076284772e-03f);
  p = p * f + broadcast4(5.5504108664821580e-02f);
  p = p * f + broadcast4(2.4022650695910071e-01f);
  p = p * f + broadcast4(6.9314718055994531e-01f);
  p = p * f + broadcast4(1.0f);
  const i32x4 pow2n = ((i32x4)shifted - 0x4B400000 + 127) << 23;
  return (f32x4)(~underflow & (i32x4)(p * (f32x4)pow2n));
}

float row_max(const float* x, int64_t n) {
  f32x4 m0 = broadcast4(kNegInf), m1 = m0;
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const f32x4 a = load4(x + j), b = load4(x + j + 4);
    m0 = select4(a > m0, a, m0);
    m1 = select4(b > m1, b, m1);
  }
  m0 = select4(m1 > m0, m1, m0);
  float m = kNegInf;
  for (int l = 0; l < 4; ++l) m = m0[l] > m ? m0[l] : m;
  for (; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

// x[j] = 2^(x[j] − sub) for j < n; returns their sum.
float exp2_row(float* x, int64_t n, float sub) {
  const f32x4 vsub = broadcast4(sub);
  f32x4 s0 = broadcast4(0.0f), s1 = s0;
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const f32x4 a = exp2_4(load4(x + j) - vsub);
    const f32x4 b = exp2_4(load4(x + j + 4) - vsub);
    store4(x + j, a);
    store4(x + j + 4, b);
    s0 += a;
    s1 += b;
  }
  // The tail goes through the same lanes, padded with -inf (2^-inf = 0).
  for (; j < n; j += 4) {
    const int64_t left = std::min<int64_t>(4, n - j);
    float pad[4] = {kNegInf, kNegInf, kNegInf, kNegInf};
    for (int64_t l = 0; l < left; ++l) pad[l] = x[j + l] - sub;
    const f32x4 a = exp2_4(load4(pad));
    for (int64_t l = 0; l < left; ++l) x[j + l] = a[l];
    s0 += a;
  }
  s0 += s1;
  return (s0[0] + s0[1]) + (s0[2] + s0[3]);
}

// y += a·x
void add_scaled(float* y, const float* x, int64_t n, float a) {
  for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];
}

// Keys a query row sees in the key block [j0, j0 + cols): all of them, or
// under the causal mask those with j ≤ i + (nk − nq).
inline int64_t visible_keys(bool causal, int64_t i, int64_t offset, int64_t j0, int64_t cols) {
  if (!causal) return cols;
  return std::min(std::max<int64_t>(i + offset - j0 + 1, 0), cols);
}


// q·scale·log2(e), so scores come out in base 2. Forward and backward share it:
// the backward recomputes scores from the same rounded operands, so that
// 2^(s − lse) matches the forward's probabilities even for scores in the
// thousands (scaling after the product instead cost ~3e-4 relative there).
void scale_queries(const float* q, int64_t n, float scale, float* out) {
  const float mul = scale * kLog2e;
  for (int64_t x = 0; x < n; ++x) out[x] = q[x] * mul;
}

// Base-2 log-sum-exp (the units of the scaled scores) to the natural log the
// op returns, and back. The backward divides by the very constant the forward
// multiplied by, so the round trip adds nothing to lse's own f32 rounding.
inline float lse_from_base2(double lse2) { return static_cast<float>(lse2 * kLn2); }
inline float lse_to_base2(float lse) { return static_cast<float>(static_cast<double>(lse) / kLn2); }

// One task's forward scratch, bounded by the block sizes:
// BQ·D + BQ·BK + 2·BQ·Dv + 4·BQ floats, 97 KB for D = Dv = 40.
struct ForwardScratch {
  std::vector<float> q_scaled, scores, pv, acc, row_max, alpha;
  std::vector<double> row_sum;
  ForwardScratch(int64_t d, int64_t dv)
      : q_scaled(kFwdBlockQ * d), scores(kFwdBlockQ * kFwdBlockK), pv(kFwdBlockQ * dv), acc(kFwdBlockQ * dv),
        row_max(kFwdBlockQ), alpha(kFwdBlockQ), row_sum(kFwdBlockQ) {}
};

// Query rows [i0, i0 + rows) of head bh against every key they see.
void forward_block(const AttentionForwardArgs& a, int64_t bh, int64_t i0, ForwardScratch& s) {
  const int64_t d = a.d, dv = a.dv, offset = a.nk - a.nq;
  const int64_t rows = std::min(kFwdBlockQ, a.nq - i0);
  const float* q = static_cast<const float*>(a.q) + (bh * a.nq + i0) * d;
  const float* k = static_cast<const float*>(a.k) + bh * a.nk * d;
  const float* v = static_cast<const float*>(a.v) + bh * a.nk * dv;
  float* o = static_cast<float*>(a.o) + (bh * a.nq + i0) * dv;
  float* lse = a.lse + bh * a.nq + i0;

  scale_queries(q, rows * d, a.scale, s.q_scaled.data());
  std::fill(s.row_max.begin(), s.row_max.end(), kNegInf);
  std::fill(s.row_sum.begin(), s.row_sum.end(), 0.0);
  std::fill(s.acc.begin(), s.acc.begin() + rows * dv, 0.0f);

  const int64_t key_end = a.causal ? std::min(std::max<int64_t>(i0 + rows + offset, 0), a.nk) : a.nk;
  for (int64_t j0 = 0; j0 < key_end; j0 += kFwdBlockK) {
    const int64_t cols = std::min(kFwdBlockK, key_end - j0);
    float* scores = s.scores.data();
    sgemm_or_zeros(false, true, rows, cols, d, s.q_scaled.data(), d, k + j0 * d, d, scores, cols);
    for (int64_t i = 0; i < rows; ++i) {
      float* p = scores + i * cols;
      const int64_t seen = visible_keys(a.causal, i0 + i, offset, j0, cols);
      std::fill(p + seen, p + cols, 0.0f);
      if (seen == 0) {
        s.alpha[i] = 1.0f;
        continue;
      }
      const float m_new = std::max(s.row_max[i], row_max(p, seen));
      // Rescales what the row accumulated under its previous maximum (0 before any key).
      const float alpha = std::exp2(s.row_max[i] - m_new);
      s.row_sum[i] = s.row_sum[i] * alpha + exp2_row(p, seen, m_new);
      s.row_max[i] = m_new;
      s.alpha[i] = alpha;
    }
    sgemm_or_zeros(false, false, rows, dv, cols, scores, cols, v + j0 * dv, dv, s.pv.data(), dv);
    for (int64_t i = 0; i < rows; ++i) {
      float* acc = s.acc.data() + i * dv;
      const float* pv = s.pv.data() + i * dv;
      const float alpha = s.alpha[i];
      for (int64_t c = 0; c < dv; ++c) acc[c] = acc[c] * alpha + pv[c];
    }
  }

  for (int64_t i = 0; i < rows; ++i) {
    const double l = s.row_sum[i];
    float* out = o + i * dv;
    if (l > 0) {
      const float inv = static_cast<float>(1.0 / l);
      const float* acc = s.acc.data() + i * dv;
      for (int64_t c = 0; c < dv; ++c) out[c] = acc[c] * inv;
      lse[i] = lse_from_base2(s.row_max[i] + std::log2(l));
    } else {
      // No visible key: an empty sum, so o = 0 and lse = log 0.
      std::fill(out, out + dv, 0.0f);
      lse[i] = kNegInf;
    }
  }
}

void attention_forward_cpu(const AttentionForwardArgs& a) {
  require_f32("attention_forward", a.dtype);
  const int64_t heads = a.batch * a.heads;
  const int64_t q_blocks = (a.nq + kFwdBlockQ - 1) / kFwdBlockQ;
  if (heads * q_blocks == 0) return;
  SerialBlasScope single;
  parallel_for(heads * q_blocks, 1, [&](int64_t t0, int64_t t1) {
    ForwardScratch scratch(a.d, a.dv);
    for (int64_t t = t0; t < t1; ++t) forward_block(a, t / q_blocks, (t % q_blocks) * kFwdBlockQ, scratch);
  });
}

// One task's backward scratch, bounded by the block sizes:
// BQ·D + 2·BQ·BK + max(BQ, BK)·max(D, Dv) floats, 168 KB for D = Dv = 40.
struct BackwardScratch {
  std::vector<float> q_scaled, p, ds, product;
  BackwardScratch(int64_t d, int64_t dv)
      : q_scaled(kBwdBlockQ * d), p(kBwdBlockQ * kBwdBlockK), ds(kBwdBlockQ * kBwdBlockK),
        product(std::max(kBwdBlockQ, kBwdBlockK) * std::max<int64_t>(std::max(d, dv), 1)) {}
};

// Gradients from keys [k_begin, k_end) of head bh: writes their dk and dv rows
// and this key range's share of dq (scaled) into dq_part [nq, d].
void backward_keys(const AttentionBackwardArgs& a, const float* delta, int64_t bh, int64_t k_begin, int64_t k_end,
                   float* dq_part, BackwardScratch& s) {
  const int64_t d = a.d, dv = a.dv, nq = a.nq, offset = a.nk - a.nq;
  const float* q = static_cast<const float*>(a.q) + bh * nq * d;
  const float* k = static_cast<const float*>(a.k) + bh * a.nk * d;
  const float* v = static_cast<const float*>(a.v) + bh * a.nk * dv;
  const float* dout = static_cast<const float*>(a.dout) + bh * nq * dv;
  const float* lse = a.lse + bh * nq;
  const float* row_delta = delta + bh * nq;
  float* dk = static_cast<float*>(a.dk) + bh * a.nk * d;
  float* dvg = static_cast<float*>(a.dv_grad) + bh * a.nk * dv;

  std::fill(dq_part, dq_part + nq * d, 0.0f);
  std::fill(dk + k_begin * d, dk + k_end * d, 0.0f);
  std::fill(dvg + k_begin * dv, dvg + k_end * dv, 0.0f);
  float* product = s.product.data();

  for (int64_t j0 = k_begin; j0 < k_end; j0 += kBwdBlockK) {
    const int64_t cols = std::min(kBwdBlockK, k_end - j0);
    // Under the causal mask the rows before j0 − offset see none of these keys.
    const int64_t first_row = a.causal ? std::min(std::max<int64_t>(j0 - offset, 0), nq) : 0;
    for (int64_t i0 = first_row; i0 < nq; i0 += kBwdBlockQ) {
      const int64_t rows = std::min(kBwdBlockQ, nq - i0);
      float* q_scaled = s.q_scaled.data();
      float* p = s.p.data();
      float* ds = s.ds.data();
      // P recomputed from the saved log-sum-exp: p_ij = 2^(q_i·k_j·scale·log2e − lse_i·log2e).
      scale_queries(q + i0 * d, rows * d, a.scale, q_scaled);
      sgemm_or_zeros(false, true, rows, cols, d, q_scaled, d, k + j0 * d, d, p, cols);
      for (int64_t i = 0; i < rows; ++i) {
        float* p_row = p + i * cols;
        const int64_t seen = visible_keys(a.causal, i0 + i, offset, j0, cols);
        exp2_row(p_row, seen, lse_to_base2(lse[i0 + i]));
        std::fill(p_row + seen, p_row + cols, 0.0f);
      }
      // dv_j += Pᵀ·dO_i
      sgemm_or_zeros(true, false, cols, dv, rows, p, cols, dout + i0 * dv, dv, product, dv);
      add_scaled(dvg + j0 * dv, product, cols * dv, 1.0f);
      // dS = P ∘ (dO_i·V_jᵀ − delta_i)
      sgemm_or_zeros(false, true, rows, cols, dv, dout + i0 * dv, dv, v + j0 * dv, dv, ds, cols);
      for (int64_t i = 0; i < rows; ++i) {
        const float* p_row = p + i * cols;
        float* ds_row = ds + i * cols;
        const float di = row_delta[i0 + i];
        for (int64_t j = 0; j < cols; ++j) ds_row[j] = p_row[j] * (ds_row[j] - di);
      }
      // dk_j += scale·dSᵀ·Q_i = ln2·dSᵀ·(Q_i·scale·log2e); dq_i += scale·dS·K_j
      sgemm_or_zeros(true, false, cols, d, rows, ds, cols, q_scaled, d, product, d);
      add_scaled(dk + j0 * d, product, cols * d, kLn2);
      sgemm_or_zeros(false, false, rows, d, cols, ds, cols, k + j0 * d, d, product, d);
      add_scaled(dq_part + i0 * d, product, rows * d, a.scale);
    }
  }
}

void attention_backward_cpu(const AttentionBackwardArgs& a) {
  require_f32("attention_backward", a.dtype);
  const int64_t heads = a.batch * a.heads, nq = a.nq, d = a.d, dv = a.dv;
  if (heads == 0) return;
  float* dq = static_cast<float*>(a.dq);
  if (a.nk == 0) {
    // No keys: o is 0 whatever q is, and dk, dv are empty.
    std::fill(dq, dq + heads * nq * d, 0.0f);
    return;
  }

  // delta_i = Σ_c dO_ic·O_ic, the softmax backward's row term (double: Dv terms).
  std::vector<float> delta(static_cast<size_t>(heads * nq));
  const float* dout = static_cast<const float*>(a.dout);
  const float* o = static_cast<const float*>(a.o);
  parallel_for(heads * nq, std::max<int64_t>(1, 4096 / std::max<int64_t>(dv, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      double acc = 0;
      for (int64_t c = 0; c < dv; ++c) acc += static_cast<double>(dout[r * dv + c]) * o[r * dv + c];
      delta[r] = static_cast<float>(acc);
    }
  });

  // Tasks own disjoint key ranges, so dk and dv rows have one writer. When
  // the heads do not split evenly over the threads, each head's keys split
  // into `chunks` ranges (about two tasks per thread); chunk 0 writes dq
  // directly, the others write private [nq, d] partials that are summed
  // afterwards: (chunks − 1)·B·H·Nq·D floats, only in that case.
  const int64_t key_blocks = (a.nk + kBwdBlockK - 1) / kBwdBlockK;
  const int64_t threads = num_threads();
  const int64_t chunks = heads % threads == 0 ? 1 : std::min(key_blocks, (2 * threads + heads - 1) / heads);
  std::vector<float> partials(static_cast<size_t>(heads * (chunks - 1) * nq * d));
  {
    SerialBlasScope single;
    parallel_for(heads * chunks, 1, [&](int64_t t0, int64_t t1) {
      BackwardScratch scratch(d, dv);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t bh = t / chunks, c = t % chunks;
        const int64_t k_begin = std::min(a.nk, (key_blocks * c / chunks) * kBwdBlockK);
        const int64_t k_end = std::min(a.nk, (key_blocks * (c + 1) / chunks) * kBwdBlockK);
        float* dq_part = c == 0 ? dq + bh * nq * d : partials.data() + ((bh * (chunks - 1)) + c - 1) * nq * d;
        backward_keys(a, delta.data(), bh, k_begin, k_end, dq_part, scratch);
      }
    });
  }
  if (chunks > 1) {
    parallel_for(heads, 1, [&](int64_t h0, int64_t h1) {
      for (int64_t bh = h0; bh < h1; ++bh)
        for (int64_t c = 1; c < chunks; ++c)
          add_scaled(dq + bh * nq * d, partials.data() + ((bh * (chunks - 1)) + c - 1) * nq * d, nq * d, 1.0f);
    });
  }
}

}  // namespace

IMPRINT_REGISTER_KERNEL(attention_forward, CPU, AttentionForwardArgs, attention_forward_cpu);
IMPRINT_REGISTER_KERNEL(attention_backward, CPU, AttentionBackwardArgs, attention_backward_cpu);

}  // namespace cpu
}  // namespace imprint
