#include "core/dtype.h"

namespace imprint {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::U8: return "u8";
  }
  return "?";
}

bool parse_dtype(const std::string& name, DType* out) {
  static const struct { const char* name; DType dtype; } kNames[] = {
      {"f32", DType::F32},   {"float32", DType::F32}, {"f16", DType::F16},  {"float16", DType::F16},
      {"bf16", DType::BF16}, {"bfloat16", DType::BF16}, {"i32", DType::I32}, {"int32", DType::I32},
      {"i64", DType::I64},   {"int64", DType::I64},   {"u8", DType::U8},    {"uint8", DType::U8},
  };
  for (const auto& entry : kNames) {
    if (name == entry.name) {
      *out = entry.dtype;
      return true;
    }
  }
  return false;
}

}  // namespace imprint
