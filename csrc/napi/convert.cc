#include "napi/convert.h"

#include <cmath>

#include "core/error.h"

namespace imprint {
namespace napi {

namespace {
[[noreturn]] void bad(const char* op, const std::string& what) { fail(ErrorCode::InvalidArgument, std::string(op) + ": " + what); }
bool is_safe_integer(double d) { return std::isfinite(d) && std::floor(d) == d && std::fabs(d) <= 9007199254740991.0; }
}  // namespace

std::vector<int64_t> to_int_list(const Napi::Value& value, const char* op, const char* name) {
  if (!value.IsArray()) bad(op, std::string(name) + " must be an array of integers");
  Napi::Array arr = value.As<Napi::Array>();
  std::vector<int64_t> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    if (!v.IsNumber() || !is_safe_integer(v.As<Napi::Number>().DoubleValue())) {
      bad(op, std::string(name) + "[" + std::to_string(i) + "] is not an integer");
    }
    out.push_back(static_cast<int64_t>(v.As<Napi::Number>().DoubleValue()));
  }
  return out;
}

Shape to_shape(const Napi::Value& value, const char* op) {
  Shape shape = to_int_list(value, op, "shape");
  for (int64_t d : shape) {
    if (d < 0) bad(op, "shape " + shape_str(shape) + " has a negative dimension");
  }
  return shape;
}

DType to_dtype(const Napi::Value& value, const char* op) {
  DType dtype;
  if (!value.IsString() || !parse_dtype(value.As<Napi::String>().Utf8Value(), &dtype)) {
    bad(op, "dtype must be one of 'f32', 'f16', 'bf16', 'i32', 'i64', 'u8'");
  }
  return dtype;
}

Device to_device(const Napi::Value& value, const char* op) {
  if (!value.IsString()) bad(op, "device must be a string such as 'cpu' or 'cuda:0'");
  return parse_device(value.As<Napi::String>().Utf8Value());
}

double to_number(const Napi::Value& value, const char* op, const char* name) {
  if (!value.IsNumber()) bad(op, std::string(name) + " must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

bool to_bool(const Napi::Value& value, const char* op, const char* name) {
  if (!value.IsBoolean()) bad(op, std::string(name) + " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

uint64_t to_u64(const Napi::Value& value, const char* op, const char* name) {
  if (value.IsBigInt()) {
    int sign = 0;
    size_t words = 1;
    uint64_t word = 0;
    napi_status status = napi_get_value_bigint_words(value.Env(), value, &sign, &words, &word);
    if (status != napi_ok) bad(op, std::string(name) + " could not be read");
    if (sign != 0) bad(op, std::string(name) + " must not be negative");
    // Query the word count: more than one word means >= 2^64.
    size_t count = 0;
    napi_get_value_bigint_words(value.Env(), value, nullptr, &count, nullptr);
    if (count > 1) bad(op, std::string(name) + " must be below 2^64");
    return word;
  }
  if (value.IsNumber()) {
    double d = value.As<Napi::Number>().DoubleValue();
    if (!is_safe_integer(d) || d < 0) bad(op, std::string(name) + " must be a non-negative safe integer or a BigInt");
    return static_cast<uint64_t>(d);
  }
  bad(op, std::string(name) + " must be a non-negative integer or a BigInt");
}

}  // namespace napi
}  // namespace imprint
