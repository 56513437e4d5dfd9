// The JSON of safetensors headers (csrc/io/safetensors.cc): a strict reader
// of only what a header needs, and the string escaping its writer uses.
// Numbers keep their text so integers are read exactly (a double would
// silently round offsets above 2^53); objects keep their members in order and
// refuse duplicate keys.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace imprint {
namespace io {

struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool boolean = false;
  std::string text;  // String: the decoded value; Number: the literal
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;
};

// Whether s[0, n) is UTF-8; rejects overlong forms, surrogates and code points
// above U+10FFFF. On failure *where is the offset of the offending sequence.
bool valid_utf8(const uint8_t* s, size_t n, size_t* where);

// Parses s[0, n) (UTF-8, checked by the caller) as one JSON object, nested at
// most 64 levels deep. Errors are INVALID_ARGUMENT
// "<path>: invalid header JSON at byte <i>: <what>".
Json parse_json_object(const std::string& path, const char* s, size_t n);

// "null", "a boolean", "a number", "a string", "an array", "an object".
const char* json_kind_name(Json::Kind k);

// Appends s as a JSON string: quotes, \" and \\ escaped, control characters as \u00XX.
void json_string(std::string& out, const std::string& s);

}  // namespace io
}  // namespace imprint
