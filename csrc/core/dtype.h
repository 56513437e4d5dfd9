// Element types a tensor can hold. f16/bf16 are stored as raw 16-bit words and
// computed in f32 (fp32 accumulation everywhere).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace imprint {

enum class DType : int { F32 = 0, F16 = 1, BF16 = 2, I32 = 3, I64 = 4, U8 = 5 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
// Parses "f32", "float32", "f16", "float16", "bf16", "bfloat16", "i32", "int32", "i64", "int64", "u8", "uint8".
bool parse_dtype(const std::string& name, DType* out);
inline bool is_floating(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16; }

}  // namespace imprint
