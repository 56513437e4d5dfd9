// Element types as C++ types for the CUDA kernels, the device twin of
// csrc/cpu/element.h: f16/bf16 load to float and store rounded to nearest even
// through core/half.h, so every conversion matches the CPU bit for bit.
#pragma once
#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"
#include "core/hd.h"

namespace imprint {
namespace cuda {

// Distinct types for the two 16-bit float formats (both are raw uint16 words).
struct f16 {
  uint16_t bits;
};
struct bf16 {
  uint16_t bits;
};

// The type arithmetic happens in: float for the float family, the type itself otherwise.
template <class T> struct Compute { using type = T; };
template <> struct Compute<f16> { using type = float; };
template <> struct Compute<bf16> { using type = float; };

template <class T>
constexpr bool is_half = std::is_same<T, f16>::value || std::is_same<T, bf16>::value;

IMPRINT_HD float load(f16 v) { return f16_to_float(v.bits); }
IMPRINT_HD float load(bf16 v) { return bf16_to_float(v.bits); }
template <class T> IMPRINT_HD T load(T v) { return v; }

template <class T> IMPRINT_HD T store(typename Compute<T>::type v) { return v; }
template <> IMPRINT_HD f16 store<f16>(float v) { return f16{float_to_f16(v)}; }
template <> IMPRINT_HD bf16 store<bf16>(float v) { return bf16{float_to_bf16(v)}; }

// Integer ranges as plain constants (std::numeric_limits is host-only code).
template <class T> struct IntLimits;
template <> struct IntLimits<uint8_t> {
  static constexpr uint8_t min = 0;
  static constexpr uint8_t max = 255;
};
template <> struct IntLimits<int32_t> {
  static constexpr int32_t min = INT32_MIN;
  static constexpr int32_t max = INT32_MAX;
};
template <> struct IntLimits<int64_t> {
  static constexpr int64_t min = INT64_MIN;
  static constexpr int64_t max = INT64_MAX;
};

}  // namespace cuda
}  // namespace imprint

// IMPRINT_CUDA_DISPATCH(dtype, T, body): runs body with T bound to the element type.
#define IMPRINT_CUDA_DISPATCH(dtype, T, ...)                                                       \
  switch (dtype) {                                                                                 \
    case ::imprint::DType::F32: { using T = float; __VA_ARGS__; break; }                           \
    case ::imprint::DType::F16: { using T = ::imprint::cuda::f16; __VA_ARGS__; break; }            \
    case ::imprint::DType::BF16: { using T = ::imprint::cuda::bf16; __VA_ARGS__; break; }          \
    case ::imprint::DType::I32: { using T = int32_t; __VA_ARGS__; break; }                         \
    case ::imprint::DType::I64: { using T = int64_t; __VA_ARGS__; break; }                         \
    case ::imprint::DType::U8: { using T = uint8_t; __VA_ARGS__; break; }                          \
    default: ::imprint::fail(::imprint::ErrorCode::Internal, "cuda kernel reached with an unknown dtype"); \
  }
