// Sums for the CPU norm kernels. Each sum runs in float SIMD lanes and is
// flushed into double every kBlock elements, so sums over whole groups or rows
// keep double accuracy at float speed.
//
// The lane type V is a GCC/Clang vector of 4 or 8 floats. The kernels are
// compiled twice: with 8 lanes for x86-64 CPUs that have AVX2 and FMA (chosen
// at run time by norm_use_avx2(), which IMPRINT_CPU_ISA can turn off), and with
// 4 lanes for every other CPU, since the build itself targets the baseline
// instruction set.
#pragma once
#include <cstdint>
#include <cstring>

#include "cpu/cpu_isa.h"

namespace imprint {
namespace cpu {

typedef float f32x4 __attribute__((vector_size(16)));
typedef float f32x8 __attribute__((vector_size(32)));

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define IMPRINT_NORM_AVX2 1
#define IMPRINT_NORM_AVX2_TARGET __attribute__((target("avx2,fma")))
// True when the CPU has AVX2 and FMA and IMPRINT_CPU_ISA does not ask for less.
inline bool norm_use_avx2() { return static_cast<int>(cpu_isa()) >= static_cast<int>(CpuIsa::kAvx2); }
#else
#define IMPRINT_NORM_AVX2 0
inline bool norm_use_avx2() { return false; }
#endif

// Forced inlining: the helpers must be compiled as part of the AVX2 functions
// that call them, which GCC does not do across a target change otherwise.
#define IMPRINT_NORM_INLINE inline __attribute__((always_inline))

// Elements per parallel task, enough to outweigh the scheduling.
constexpr int64_t kNormTaskGrain = 16384;

// Elements summed in float before a flush to double: each lane then sums at
// most 64 values, so the relative error stays below 64 ulps in the worst case.
constexpr int64_t kBlock = 512;

// Vectors are passed by reference: by value, an 8-float vector's ABI would
// depend on the instruction set.
template <class V>
IMPRINT_NORM_INLINE void load(V& v, const float* p) {
  std::memcpy(&v, p, sizeof v);
}

// The sum of the lanes of a and b, in double, added as a tree (a chain of
// adds would cost more than the loop it ends for rows of a few hundred).
template <class V>
IMPRINT_NORM_INLINE double lane_sum(const V& a, const V& b) {
  const V v = a + b;
  if constexpr (sizeof(V) == 8 * sizeof(float)) {
    const double s0 = static_cast<double>(v[0]) + v[4], s1 = static_cast<double>(v[1]) + v[5];
    const double s2 = static_cast<double>(v[2]) + v[6], s3 = static_cast<double>(v[3]) + v[7];
    return (s0 + s2) + (s1 + s3);
  } else {
    return (static_cast<double>(v[0]) + v[2]) + (static_cast<double>(v[1]) + v[3]);
  }
}

// Count, mean and centred sum of squares (Σ (x − mean)²) of a set of values.
struct Moments {
  double count = 0, mean = 0, m2 = 0;

  // Chan, Golub and LeVeque's pairwise update: exact for any two sets' moments,
  // whatever their means.
  IMPRINT_NORM_INLINE void merge(double n_b, double mean_b, double m2_b) {
    if (count == 0) {
      count = n_b;
      mean = mean_b;
      m2 = m2_b;
      return;
    }
    const double total = count + n_b;
    if (n_b == 0) return;
    const double delta = mean_b - mean;
    mean += delta * (n_b / total);
    m2 += m2_b + delta * delta * (count * n_b / total);
    count = total;
  }
};

// Σ (x − c) and Σ (x − c)² over x[0, n), n ≤ kBlock, in double.
template <class V>
IMPRINT_NORM_INLINE void centred_sums(const float* x, int64_t n, float c, double& s1, double& s2) {
  constexpr int64_t W = sizeof(V) / sizeof(float);
  V d0 = {}, d1 = {}, q0 = {}, q1 = {}, a, b;
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    load(a, x + i);
    load(b, x + i + W);
    a -= c;
    b -= c;
    d0 += a;
    d1 += b;
    q0 += a * a;
    q1 += b * b;
  }
  s1 = lane_sum(d0, d1);
  s2 = lane_sum(q0, q1);
  for (; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - c;
    s1 += d;
    s2 += d * d;
  }
}

// Moments of x[0, n), accurate for data of any offset. Each block's sums are
// taken around a centre near its mean (the mean of its first values, taken
// relative to the first so large offsets cancel exactly): then Σd² − (Σd)²/len
// cannot cancel badly. A block whose mean turns out far from the centre (next
// to its spread) is summed again around its mean. Blocks merge in double.
template <class V>
IMPRINT_NORM_INLINE Moments moments(const float* x, int64_t n) {
  constexpr int64_t W = sizeof(V) / sizeof(float);
  Moments m;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t len = b + kBlock < n ? kBlock : n - b;
    const double inv_len = 1.0 / static_cast<double>(len);
    const float* xb = x + b;
    float center = xb[0];
    if (len >= 2 * W) {
      V h0, h1;
      load(h0, xb);
      load(h1, xb + W);
      center += static_cast<float>(lane_sum(V(h0 - xb[0]), V(h1 - xb[0])) / (2 * W));
    }
    double s1, s2;
    centred_sums<V>(xb, len, center, s1, s2);
    if (s1 * s1 * inv_len * 2 > s2) {
      center = static_cast<float>(center + s1 * inv_len);
      centred_sums<V>(xb, len, center, s1, s2);
    }
    const double m2 = s2 - s1 * s1 * inv_len;
    m.merge(static_cast<double>(len), center + s1 * inv_len, m2 > 0 ? m2 : 0.0);
  }
  return m;
}

// The sums a norm backward needs over one run of elements, with d = x − mean
// (the saved f32 mean) and g = dy, or dy·w with a per-element weight.
struct GradSums {
  double g = 0;      // Σ g
  double g_dev = 0;  // Σ g·d
  double dev = 0;    // Σ d: recovers the rounding of the saved mean
};

template <class V, bool kWeighted>
IMPRINT_NORM_INLINE GradSums grad_sums(const float* x, const float* dy, const float* w, int64_t n, float mean) {
  constexpr int64_t W = sizeof(V) / sizeof(float);
  GradSums s;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = b + kBlock < n ? b + kBlock : n;
    V g0 = {}, g1 = {}, gd0 = {}, gd1 = {}, d0 = {}, d1 = {}, xa, xb, ga, gb;
    int64_t i = b;
    for (; i + 2 * W <= e; i += 2 * W) {
      load(xa, x + i);
      load(xb, x + i + W);
      load(ga, dy + i);
      load(gb, dy + i + W);
      if constexpr (kWeighted) {
        V wa, wb;
        load(wa, w + i);
        load(wb, w + i + W);
        ga *= wa;
        gb *= wb;
      }
      xa -= mean;
      xb -= mean;
      g0 += ga;
      g1 += gb;
      gd0 += ga * xa;
      gd1 += gb * xb;
      d0 += xa;
      d1 += xb;
    }
    s.g += lane_sum(g0, g1);
    s.g_dev += lane_sum(gd0, gd1);
    s.dev += lane_sum(d0, d1);
    for (; i < e; ++i) {
      const double d = static_cast<double>(x[i]) - mean;
      const double g = kWeighted ? static_cast<double>(dy[i]) * w[i] : dy[i];
      s.g += g;
      s.g_dev += g * d;
      s.dev += d;
    }
  }
  return s;
}

}  // namespace cpu
}  // namespace imprint
