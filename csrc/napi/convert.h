// Reading JavaScript arguments into engine types. lib/ validates options first
// and gives friendlier messages; these checks keep direct callers of the addon
// from crashing it.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace imprint {
namespace napi {

Shape to_shape(const Napi::Value& value, const char* op);
DType to_dtype(const Napi::Value& value, const char* op);
Device to_device(const Napi::Value& value, const char* op);
std::vector<int64_t> to_int_list(const Napi::Value& value, const char* op, const char* name);
double to_number(const Napi::Value& value, const char* op, const char* name);
bool to_bool(const Napi::Value& value, const char* op, const char* name);
// A non-negative integer below 2^64, from a BigInt or a safe integer number.
uint64_t to_u64(const Napi::Value& value, const char* op, const char* name);

}  // namespace napi
}  // namespace imprint
