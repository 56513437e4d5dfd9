// Philox4x32-10 counter-based RNG (Salmon et al., SC'11, as in Random123) and
// the float transforms on top of it. Every float operation is spelled with an
// explicitly rounded primitive, so the CPU and CUDA backends produce
// bit-identical values for the same (seed, offset, index).
#pragma once
#include <cstdint>

#include "core/half.h"
#include "core/hd.h"

namespace imprint {
namespace philox {

struct Block {
  uint32_t v[4];
};

IMPRINT_HD uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// One 128-bit output block for a 128-bit counter and a 64-bit key.
IMPRINT_HD Block philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0;
    uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Block{{c0, c1, c2, c3}};
}

// Block number `block` of the stream for `seed`: counter = (block, 0), key = seed.
IMPRINT_HD Block stream_block(uint64_t seed, uint64_t block) {
  return philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Correctly rounded primitives, never fused into FMA by either compiler.
#if defined(__CUDA_ARCH__)
IMPRINT_HD float add_rn(float a, float b) { return __fadd_rn(a, b); }
IMPRINT_HD float mul_rn(float a, float b) { return __fmul_rn(a, b); }
IMPRINT_HD float div_rn(float a, float b) { return __fdiv_rn(a, b); }
IMPRINT_HD float sqrt_rn(float a) { return __fsqrt_rn(a); }
#else
// The host build compiles this header with -ffp-contract=off (see CMakeLists.txt / binding.gyp).
IMPRINT_HD float add_rn(float a, float b) { return a + b; }
IMPRINT_HD float mul_rn(float a, float b) { return a * b; }
IMPRINT_HD float div_rn(float a, float b) { return a / b; }
IMPRINT_HD float sqrt_rn(float a) { return __builtin_sqrtf(a); }  // IEEE sqrt is correctly rounded
#endif

// Uniform in (0, 1]: 24 random bits, never exactly 0 (log-safe).
IMPRINT_HD float uniform_open0(uint32_t x) { return mul_rn(static_cast<float>((x >> 8) + 1u), 5.9604644775390625e-8f); }
// Uniform in [0, 1).
IMPRINT_HD float uniform_closed0(uint32_t x) { return mul_rn(static_cast<float>(x >> 8), 5.9604644775390625e-8f); }

// Natural log for x in (0, 1], from exponent and an atanh series of the mantissa;
// about 1 ulp accurate.
IMPRINT_HD float log_det(float x) {
  uint32_t bits = float_bits(x);
  int e = static_cast<int>((bits >> 23) & 0xffu) - 127;
  float m = bits_float((bits & 0x7fffffu) | 0x3f800000u);  // [1, 2)
  if (m > 1.41421356f) {
    m = mul_rn(m, 0.5f);
    e += 1;
  }
  float s = div_rn(add_rn(m, -1.0f), add_rn(m, 1.0f));  // |s| <= 0.1716
  float s2 = mul_rn(s, s);
  float p = add_rn(mul_rn(s2, 0.11111111f), 0.14285714f);
  p = add_rn(mul_rn(s2, p), 0.2f);
  p = add_rn(mul_rn(s2, p), 0.33333333f);
  p = add_rn(mul_rn(s2, p), 1.0f);
  float log_m = mul_rn(mul_rn(2.0f, s), p);
  // e * ln2 split in a high part exact in float and a small correction.
  float fe = static_cast<float>(e);
  return add_rn(add_rn(mul_rn(fe, 0.693145751953125f), mul_rn(fe, 1.4286068203094173e-06f)), log_m);
}

// sin and cos of 2*pi*u for u in [0, 1): quadrant reduction is exact in u, then
// Taylor polynomials on [0, pi/4].
IMPRINT_HD void sincos_2pi(float u, float* sin_out, float* cos_out) {
  float t = mul_rn(u, 4.0f);  // exact
  int quadrant = static_cast<int>(t);
  float f = add_rn(t, -static_cast<float>(quadrant));  // exact, in [0, 1)
  bool swap = f > 0.5f;
  if (swap) f = add_rn(1.0f, -f);  // exact (Sterbenz)
  float x = mul_rn(f, 1.57079632679489662f);  // in [0, pi/4]
  float x2 = mul_rn(x, x);
  float sp = add_rn(mul_rn(x2, 2.7557319e-6f), -1.9841270e-4f);
  sp = add_rn(mul_rn(x2, sp), 8.3333333e-3f);
  sp = add_rn(mul_rn(x2, sp), -1.6666667e-1f);
  float s = add_rn(x, mul_rn(mul_rn(x, x2), sp));
  float cp = add_rn(mul_rn(x2, -2.7557319e-7f), 2.4801587e-5f);
  cp = add_rn(mul_rn(x2, cp), -1.3888889e-3f);
  cp = add_rn(mul_rn(x2, cp), 4.1666667e-2f);
  cp = add_rn(mul_rn(x2, cp), -0.5f);
  float c = add_rn(1.0f, mul_rn(x2, cp));
  if (swap) {
    float tmp = s;
    s = c;
    c = tmp;
  }
  // Rotate by the quadrant: (sin, cos)(a + q*pi/2).
  switch (quadrant & 3) {
    case 0: *sin_out = s; *cos_out = c; break;
    case 1: *sin_out = c; *cos_out = -s; break;
    case 2: *sin_out = -s; *cos_out = -c; break;
    default: *sin_out = -c; *cos_out = s; break;
  }
}

// Value of element `index` of a uniform [0,1) or standard normal stream.
IMPRINT_HD float uniform_at(uint64_t seed, uint64_t offset, uint64_t index) {
  Block blk = stream_block(seed, offset + index / 4);
  return uniform_closed0(blk.v[index % 4]);
}

// Normal: Box-Muller on lanes (0,1) and (2,3) of each block.
IMPRINT_HD float normal_at(uint64_t seed, uint64_t offset, uint64_t index) {
  Block blk = stream_block(seed, offset + index / 4);
  unsigned lane = static_cast<unsigned>(index % 4);
  unsigned pair = lane & ~1u;
  float u1 = uniform_open0(blk.v[pair]);
  float u2 = uniform_closed0(blk.v[pair + 1]);
  float r = sqrt_rn(mul_rn(-2.0f, log_det(u1)));
  float s, c;
  sincos_2pi(u2, &s, &c);
  return mul_rn(r, (lane & 1u) ? s : c);
}

}  // namespace philox
}  // namespace imprint
