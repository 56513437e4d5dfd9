// Float exp and normal-CDF approximations for the activation kernels, written
// as straight-line arithmetic so loops over them vectorise (std::exp and
// std::erf are library calls that GCC vectorises only under -ffast-math).
// Measured against double references over all floats (every 61st bit
// pattern, results above 1e-36): exp ≤ 1.05 ulp, x·sigmoid(x) ≤ 2.7 ulp,
// the normal CDF ≤ 5.1 ulp and GELU ≤ 5.4 ulp, with full relative accuracy in
// GELU's negative tail (no 1 + erf(x) cancellation, unlike PyTorch's f32
// GELU). test/nn-act.test.ts checks dense grids of the ops built on them.
#pragma once
#include <cstdint>
#include <cstring>

// Hot loops carry IMPRINT_ACT_SIMD: on x86-64 Linux with glibc, GCC builds
// AVX-512, AVX2+FMA and baseline copies and picks one at load time (ifunc),
// since the addon is compiled for baseline x86-64. Elsewhere it is empty.
// Defining it empty on the command line (-DIMPRINT_ACT_SIMD=) builds one
// plain copy for the -march given, e.g. to test each instruction set.
#ifndef IMPRINT_ACT_SIMD
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define IMPRINT_ACT_SIMD __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define IMPRINT_ACT_SIMD
#endif
#endif
// Forced inline: a call per element would stop the loop from vectorising.
#if defined(__GNUC__)
#define IMPRINT_ACT_INLINE inline __attribute__((always_inline))
#else
#define IMPRINT_ACT_INLINE inline
#endif

namespace imprint {
namespace cpu {
namespace act_math {

IMPRINT_ACT_INLINE int32_t float_bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

IMPRINT_ACT_INLINE float bits_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

// c ? a : b through bit masks. GCC does not if-convert a float `?:` under the
// default -ftrapping-math, which would leave the whole loop scalar.
IMPRINT_ACT_INLINE float select(bool c, float a, float b) {
  const int32_t mask = -static_cast<int32_t>(c);
  return bits_float((float_bits(a) & mask) | (float_bits(b) & ~mask));
}

// e^(x + x_lo) for a small correction x_lo (the low part of an argument too
// long for one float). Results below about 2.5e-38 (x < -86.6) are flushed to
// zero, so no step ever makes a denormal (x86 handles those in slow
// microcode); above 88.72 the result is +inf; NaN stays NaN.
template <bool kHasLow>
IMPRINT_ACT_INLINE float exp_parts(float x, float x_lo) {
  constexpr float kLow = -86.6f, kHigh = 88.73f;
  constexpr float kLog2e = 1.44269504088896341f;
  // ln 2 split in two: n·kLn2Hi is exact for |n| < 2^15, so r keeps its low bits.
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  // Adding 1.5·2^23 rounds to the nearest integer, which lands in the low mantissa bits.
  constexpr float kShifter = 12582912.0f;
  float xc = select(x < kLow, kLow, x);  // NaN passes both comparisons unchanged
  xc = select(xc > kHigh, kHigh, xc);
  const float shifted = xc * kLog2e + kShifter;
  const float n = shifted - kShifter;
  float r = xc - n * kLn2Hi;
  r = r - n * kLn2Lo;
  if (kHasLow) r = r + x_lo;
  // e^r on [-ln2/2, ln2/2]: 1 + r + r²·P(r), P a near-minimax fit (relative error 1e-8).
  const float poly =
      ((((1.390128512866795e-3f * r + 8.363140746951103e-3f) * r + 4.166685417294502e-2f) * r +
        1.666657775640488e-1f) * r + 0.5f);
  const float er = (r * r) * poly + r + 1.0f;
  // n ∈ [-125, 128]: scale by 2^(n-1) (always a normal float) and by 2, so
  // n = 128 still reaches the top of the float range instead of overflowing early.
  // Unsigned, so the bits of a NaN shift without overflow.
  const uint32_t n_int = static_cast<uint32_t>(float_bits(shifted)) - static_cast<uint32_t>(float_bits(kShifter));
  const float half_scale = bits_float(static_cast<int32_t>((n_int + 126u) << 23));
  const float result = (er + er) * half_scale;
  return select(x < kLow, 0.0f, result);
}

IMPRINT_ACT_INLINE float exp(float x) { return exp_parts<false>(x, 0.0f); }

// Logistic sigmoid 1 / (1 + e^-x); exact 0 and 1 in the far tails.
IMPRINT_ACT_INLINE float sigmoid(float x) { return 1.0f / (1.0f + act_math::exp(-x)); }

// The standard normal distribution at x: cdf Φ(x) and density φ(x).
struct Normal {
  float cdf, pdf;
};

// Φ(x) = ½·erfc(-x/√2), in two pieces chosen by |x| (both are computed; the
// select keeps the loop branch-free):
//  - |x| < 1: Φ(x) = ½ + x·S(x²), S a degree-5 near-minimax fit.
//  - |x| ≥ 1: with a = |x|/√2, erfc(a) = t·e^(-a²)·Q(t), t = 1/(1 + |x|/2), Q a
//    degree-9 near-minimax fit (relative error 3e-9 for every a ≥ 0.7). The
//    small side ½·erfc(a) is accurate relative to itself (no 1 + erf(x)
//    cancellation), and the large side is 1 minus it.
// φ(x) shares e^(-x²/2), whose argument is split into an exact part and a
// remainder: rounding x² would cost about |x²/2| ulp (80 ulp at |x| = 13).
IMPRINT_ACT_INLINE Normal normal(float x) {
  constexpr float kInvSqrt2Pi = 0.398942280401432678f;
  const float x2 = x * x;
  const float s = (((((-1.3004615539102815e-05f * x2 + 1.2700034130830318e-04f) * x2 - 1.1983123840764165e-03f) * x2 +
                     9.977679699659348e-03f) * x2 - 6.649091839790344e-02f) * x2 + 0.3989422917366028f);
  const float center = 0.5f + x * s;

  const float ax = bits_float(float_bits(x) & 0x7fffffff);
  const float t = 1.0f / (1.0f + 0.5f * ax);  // 1 / (1 + a/√2): only two roundings
  const float q =
      (((((((((0.2473730891942978f * t - 0.7621741890907288f) * t + 0.7229885458946228f) * t +
             0.07472554594278336f) * t - 0.4182872474193573f) * t - 0.044477883726358414f) * t +
           0.08171900361776352f) * t + 0.3015471398830414f) * t + 0.39877739548683167f) * t +
       0.398947149515152f);
  // x = x_hi + x_lo with 12-bit x_hi, so x_hi² is exact and
  // x² = x_hi² + x_lo·(x_hi + x) to within the rounding of the small part.
  const float x_hi = bits_float(float_bits(x) & ~int32_t{0xfff});
  const float x_lo = x - x_hi;
  const float gauss = exp_parts<true>(-0.5f * (x_hi * x_hi), -0.5f * (x_lo * (x_hi + x)));
  const float tail = 0.5f * (t * gauss * q);  // Φ(-|x|)
  const float side = select(x < 0.0f, tail, 1.0f - tail);
  return {select(ax < 1.0f, center, side), gauss * kInvSqrt2Pi};
}

}  // namespace act_math
}  // namespace cpu
}  // namespace imprint
