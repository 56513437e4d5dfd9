// Element types as C++ types for the CPU kernels, and a dispatch macro that
// instantiates a kernel body once per dtype. f16/bf16 load to float and store
// rounded to nearest even.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"

namespace imprint {
namespace cpu {

struct f16_t {
  uint16_t bits;
};
struct bf16_t {
  uint16_t bits;
};

// The type arithmetic happens in: float for the float family, the type itself otherwise.
template <class T> struct Compute { using type = T; };
template <> struct Compute<f16_t> { using type = float; };
template <> struct Compute<bf16_t> { using type = float; };

inline float load(f16_t v) { return f16_to_float(v.bits); }
inline float load(bf16_t v) { return bf16_to_float(v.bits); }
template <class T> inline T load(T v) { return v; }

template <class T> inline T store(typename Compute<T>::type v) { return v; }
template <> inline f16_t store<f16_t>(float v) { return f16_t{float_to_f16(v)}; }
template <> inline bf16_t store<bf16_t>(float v) { return bf16_t{float_to_bf16(v)}; }

// n elements of src widened to float: how the kernels that compute in f32 read half inputs.
template <class T> inline void load_span(const T* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load(src[i]));
}

}  // namespace cpu
}  // namespace imprint

// IMPRINT_CPU_DISPATCH(dtype, T, body): runs body with T bound to the element type.
#define IMPRINT_CPU_DISPATCH(dtype, T, ...)                                                        \
  switch (dtype) {                                                                                  \
    case ::imprint::DType::F32: { using T = float; __VA_ARGS__; break; }                            \
    case ::imprint::DType::F16: { using T = ::imprint::cpu::f16_t; __VA_ARGS__; break; }            \
    case ::imprint::DType::BF16: { using T = ::imprint::cpu::bf16_t; __VA_ARGS__; break; }          \
    case ::imprint::DType::I32: { using T = int32_t; __VA_ARGS__; break; }                          \
    case ::imprint::DType::I64: { using T = int64_t; __VA_ARGS__; break; }                          \
    case ::imprint::DType::U8: { using T = uint8_t; __VA_ARGS__; break; }                           \
  }
