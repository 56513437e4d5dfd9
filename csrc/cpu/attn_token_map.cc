// The attention a query pays to chosen key tokens, and its gradient, on the
// CPU (ops/attn_token_map.cc has the formulas); cuda/attention_token_map.cu
// mirrors it. Probabilities are recomputed from the saved lse one key at a
// time: nothing of size [Nq, Nk] is stored. f32 arithmetic; the backward works
// per (batch, head), which owns its dq and dk rows, so tasks never share output.
#include <cmath>
#include <vector>

#include "core/args/attn.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/element.h"

namespace imprint {
namespace cpu {
namespace {

float dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
  for (int64_t x = 0; x < n; ++x) s += a[x] * b[x];
  return s;
}

// p = exp(scale·q·k − lse); 0 where the row saw no key (lse = −inf).
float probability(const float* q, const float* k, int64_t d, float scale, float lse) {
  return std::isinf(lse) && lse < 0 ? 0.f : std::exp(scale * dot(q, k, d) - lse);
}

template <class T>
void token_map_forward(const AttentionTokenMapArgs& a) {
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const int64_t D = a.d;
  const float inv_heads = 1.f / static_cast<float>(a.heads);
  parallel_for(a.batch * a.nq, 64, [&](int64_t begin, int64_t end) {
    std::vector<float> qi(static_cast<size_t>(D)), kt(static_cast<size_t>(D));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / a.nq, i = row % a.nq;
      for (int t = 0; t < a.count; ++t) {
        float sum = 0.f;
        for (int64_t h = 0; h < a.heads; ++h) {
          const int64_t bh = b * a.heads + h;
          load_span(q + (bh * a.nq + i) * D, D, qi.data());
          load_span(k + (bh * a.nk + a.tokens[t]) * D, D, kt.data());
          sum += probability(qi.data(), kt.data(), D, a.scale, a.lse[bh * a.nq + i]);
        }
        a.maps[(b * a.count + t) * a.nq + i] = sum * inv_heads;
      }
    }
  });
}

template <class T>
void token_map_backward(const AttentionTokenMapArgs& a) {
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  T* dq = static_cast<T*>(a.dq);
  T* dk = static_cast<T*>(a.dk);
  const int64_t D = a.d, Nq = a.nq, Nk = a.nk;
  const float factor = a.scale / static_cast<float>(a.heads);
  parallel_for(a.batch * a.heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qs(static_cast<size_t>(Nq * D)), ks(static_cast<size_t>(Nk * D));
    std::vector<float> dqs(static_cast<size_t>(Nq * D)), dks(static_cast<size_t>(Nk * D));
    std::vector<float> w(static_cast<size_t>(Nk));
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / a.heads;
      load_span(q + bh * Nq * D, Nq * D, qs.data());
      load_span(k + bh * Nk * D, Nk * D, ks.data());
      std::fill(dqs.begin(), dqs.end(), 0.f);
      std::fill(dks.begin(), dks.end(), 0.f);
      for (int64_t i = 0; i < Nq; ++i) {
        const float lse = a.lse[bh * Nq + i];
        if (std::isinf(lse) && lse < 0) continue;
        const float* qi = &qs[static_cast<size_t>(i * D)];
        // ∂L/∂s_ij (without the 1/H and the scale): −c·p_ij, plus dm_ti·p_iτ at the followed keys.
        float c = 0.f;
        for (int t = 0; t < a.count; ++t) {
          const float p = probability(qi, &ks[static_cast<size_t>(a.tokens[t] * D)], D, a.scale, lse);
          c += a.dmaps[(b * a.count + t) * Nq + i] * p;
        }
        for (int64_t j = 0; j < Nk; ++j) w[j] = -c * probability(qi, &ks[static_cast<size_t>(j * D)], D, a.scale, lse);
        for (int t = 0; t < a.count; ++t) {
          const int64_t j = a.tokens[t];
          w[j] += a.dmaps[(b * a.count + t) * Nq + i] * probability(qi, &ks[static_cast<size_t>(j * D)], D, a.scale, lse);
        }
        float* dqi = &dqs[static_cast<size_t>(i * D)];
        for (int64_t j = 0; j < Nk; ++j) {
          const float wj = w[j];
          const float* kj = &ks[static_cast<size_t>(j * D)];
          float* dkj = &dks[static_cast<size_t>(j * D)];
          for (int64_t x = 0; x < D; ++x) {
            dqi[x] += wj * kj[x];
            dkj[x] += wj * qi[x];
          }
        }
      }
      for (int64_t x = 0; x < Nq * D; ++x) dq[bh * Nq * D + x] = store<T>(factor * dqs[static_cast<size_t>(x)]);
      for (int64_t x = 0; x < Nk * D; ++x) dk[bh * Nk * D + x] = store<T>(factor * dks[static_cast<size_t>(x)]);
    }
  });
}

void token_map_forward_cpu(const AttentionTokenMapArgs& a) {
  switch (a.dtype) {
    case DType::F32: token_map_forward<float>(a); break;
    case DType::F16: token_map_forward<f16_t>(a); break;
    case DType::BF16: token_map_forward<bf16_t>(a); break;
    default: fail(ErrorCode::DtypeMismatch, "attention_token_map_forward: q must be f32, f16 or bf16");
  }
}

void token_map_backward_cpu(const AttentionTokenMapArgs& a) {
  switch (a.dtype) {
    case DType::F32: token_map_backward<float>(a); break;
    case DType::F16: token_map_backward<f16_t>(a); break;
    case DType::BF16: token_map_backward<bf16_t>(a); break;
    default: fail(ErrorCode::DtypeMismatch, "attention_token_map_backward: q must be f32, f16 or bf16");
  }
}

}  // namespace

IMPRINT_REGISTER_KERNEL(attention_token_map_forward, CPU, AttentionTokenMapArgs, token_map_forward_cpu);
IMPRINT_REGISTER_KERNEL(attention_token_map_backward, CPU, AttentionTokenMapArgs, token_map_backward_cpu);

}  // namespace cpu
}  // namespace imprint
