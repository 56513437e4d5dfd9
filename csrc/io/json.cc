// The safetensors header JSON: see json.h.
#include "io/json.h"

#include <cstring>
#include <unordered_set>

#include "core/error.h"

namespace imprint {
namespace io {
namespace {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

class JsonParser {
 public:
  JsonParser(const std::string& path, const char* s, size_t n) : path_(path), s_(s), n_(n) {}

  Json parse_document() {
    skip_ws();
    if (i_ >= n_ || s_[i_] != '{') error("the header must be a JSON object");
    Json v = value(0);
    skip_ws();
    if (i_ != n_) error("unexpected text after the JSON object");
    return v;
  }

 private:
  // Deep nesting is refused instead of recursing until the stack overflows.
  static constexpr int kMaxDepth = 64;

  [[noreturn]] void error(const std::string& what) {
    fail(ErrorCode::InvalidArgument, path_ + ": invalid header JSON at byte " + std::to_string(i_) + ": " + what);
  }
  void skip_ws() {
    while (i_ < n_ && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool literal(const char* word) {
    const size_t len = std::strlen(word);
    if (n_ - i_ < len || std::memcmp(s_ + i_, word, len) != 0) return false;
    i_ += len;
    return true;
  }

  Json value(int depth) {
    if (depth > kMaxDepth) error("nested deeper than " + std::to_string(kMaxDepth) + " levels");
    skip_ws();
    if (i_ >= n_) error("unexpected end of the header");
    Json v;
    const char c = s_[i_];
    if (c == '{') {
      v.kind = Json::Object;
      std::unordered_set<std::string> keys;  // a set, so many keys cost O(n), not O(n^2)
      ++i_;
      skip_ws();
      if (i_ < n_ && s_[i_] == '}') {
        ++i_;
        return v;
      }
      for (;;) {
        skip_ws();
        if (i_ >= n_ || s_[i_] != '"') error("expected a string key");
        std::string key = string();
        if (!keys.insert(key).second) error("duplicate key '" + key + "'");
        skip_ws();
        if (i_ >= n_ || s_[i_] != ':') error("expected ':'");
        ++i_;
        Json member = value(depth + 1);
        v.members.emplace_back(std::move(key), std::move(member));
        skip_ws();
        if (i_ < n_ && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < n_ && s_[i_] == '}') {
          ++i_;
          return v;
        }
        error("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.kind = Json::Array;
      ++i_;
      skip_ws();
      if (i_ < n_ && s_[i_] == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        v.items.push_back(value(depth + 1));
        skip_ws();
        if (i_ < n_ && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < n_ && s_[i_] == ']') {
          ++i_;
          return v;
        }
        error("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.kind = Json::String;
      v.text = string();
      return v;
    }
    if (literal("true")) {
      v.kind = Json::Bool;
      v.boolean = true;
      return v;
    }
    if (literal("false")) {
      v.kind = Json::Bool;
      return v;
    }
    if (literal("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Json::Number;
      v.text = number();
      return v;
    }
    error(std::string("unexpected character '") + c + "'");
  }

  std::string number() {
    const size_t start = i_;
    auto digits = [&] {
      const size_t from = i_;
      while (i_ < n_ && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      return i_ - from;
    };
    if (s_[i_] == '-') ++i_;
    if (i_ < n_ && s_[i_] == '0') {
      ++i_;
    } else if (digits() == 0) {
      error("malformed number");
    }
    if (i_ < n_ && s_[i_] == '.') {
      ++i_;
      if (digits() == 0) error("malformed number");
    }
    if (i_ < n_ && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < n_ && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (digits() == 0) error("malformed number");
    }
    return std::string(s_ + start, i_ - start);
  }

  uint32_t hex4() {
    if (n_ - i_ < 4) error("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[i_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') v |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= static_cast<uint32_t>(h - 'A' + 10);
      else error("bad hex digit in \\u escape");
    }
    return v;
  }

  std::string string() {
    ++i_;  // opening quote
    std::string out;
    for (;;) {
      if (i_ >= n_) error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) error("control character in a string");
      if (c != '\\') {
        out += static_cast<char>(c);  // UTF-8 was validated for the whole header
        ++i_;
        continue;
      }
      if (++i_ >= n_) error("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xdc00 && cp <= 0xdfff) error("lone low surrogate in \\u escape");
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (n_ - i_ < 2 || s_[i_] != '\\' || s_[i_ + 1] != 'u') error("lone high surrogate in \\u escape");
            i_ += 2;
            const uint32_t lo = hex4();
            if (lo < 0xdc00 || lo > 0xdfff) error("high surrogate not followed by a low one");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          }
          append_utf8(out, cp);
          break;
        }
        default: error(std::string("unknown escape '\\") + e + "'");
      }
    }
  }

  const std::string& path_;
  const char* s_;
  size_t n_;
  size_t i_ = 0;
};

}  // namespace

bool valid_utf8(const uint8_t* s, size_t n, size_t* where) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07;
    } else {
      *where = i;
      return false;
    }
    if (n - i < len) {
      *where = i;
      return false;
    }
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) {
        *where = i;
        return false;
      }
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    const uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      *where = i;
      return false;
    }
    i += len;
  }
  return true;
}

Json parse_json_object(const std::string& path, const char* s, size_t n) {
  return JsonParser(path, s, n).parse_document();
}

const char* json_kind_name(Json::Kind k) {
  switch (k) {
    case Json::Null: return "null";
    case Json::Bool: return "a boolean";
    case Json::Number: return "a number";
    case Json::String: return "a string";
    case Json::Array: return "an array";
    case Json::Object: return "an object";
  }
  return "?";
}

void json_string(std::string& out, const std::string& s) {
  static const char kHex[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

}  // namespace io
}  // namespace imprint
