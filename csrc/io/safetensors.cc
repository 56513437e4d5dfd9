#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/half.h"
#include "io/json.h"

namespace imprint {
namespace io {
namespace {

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  fail(ErrorCode::InvalidArgument, path + ": " + what);
}

// ---- Header validation ----------------------------------------------------

bool parse_st_dtype(const std::string& s, StDType* out) {
  static const std::pair<const char*, StDType> kNames[] = {
      {"F64", StDType::F64}, {"F32", StDType::F32}, {"F16", StDType::F16}, {"BF16", StDType::BF16},
      {"I64", StDType::I64}, {"I32", StDType::I32}, {"I16", StDType::I16}, {"I8", StDType::I8},
      {"U8", StDType::U8},   {"BOOL", StDType::BOOL}};
  for (const auto& n : kNames) {
    if (s == n.first) {
      *out = n.second;
      return true;
    }
  }
  return false;
}

// A non-negative integer literal read exactly; `what` names it in errors.
uint64_t read_u64(const Json& v, const std::string& path, const std::string& what) {
  if (v.kind != Json::Number) bad(path, what + " must be a non-negative integer, got " + json_kind_name(v.kind));
  const std::string& t = v.text;
  if (t[0] == '-') bad(path, what + " must be a non-negative integer, got " + t);
  uint64_t r = 0;
  for (char c : t) {
    if (c < '0' || c > '9') bad(path, what + " must be a non-negative integer, got " + t);
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (r > (std::numeric_limits<uint64_t>::max() - d) / 10) bad(path, what + " " + t + " is too large");
    r = r * 10 + d;
  }
  return r;
}

std::string u64_list(const std::vector<uint64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

SafetensorsEntry read_entry(const std::string& path, const std::string& name, const Json& v, uint64_t data_size) {
  const std::string who = "tensor '" + name + "'";
  if (v.kind != Json::Object) bad(path, who + " must be an object, got " + json_kind_name(v.kind));
  const Json* dtype = nullptr;
  const Json* shape = nullptr;
  const Json* offsets = nullptr;
  for (const auto& m : v.members) {
    if (m.first == "dtype") dtype = &m.second;
    else if (m.first == "shape") shape = &m.second;
    else if (m.first == "data_offsets") offsets = &m.second;
    else bad(path, who + " has an unknown field '" + m.first + "' (expected dtype, shape, data_offsets)");
  }
  if (!dtype || !shape || !offsets) {
    bad(path, who + " lacks '" + (!dtype ? "dtype" : !shape ? "shape" : "data_offsets") + "'");
  }
  SafetensorsEntry e;
  e.name = name;
  if (dtype->kind != Json::String || !parse_st_dtype(dtype->text, &e.dtype)) {
    bad(path, who + " has unknown dtype " + (dtype->kind == Json::String ? "'" + dtype->text + "'" : json_kind_name(dtype->kind)) +
                  " (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL)");
  }
  if (shape->kind != Json::Array) bad(path, who + " has a shape that is " + json_kind_name(shape->kind) + ", not an array");
  std::vector<uint64_t> dims;
  for (size_t i = 0; i < shape->items.size(); ++i) {
    dims.push_back(read_u64(shape->items[i], path, who + " shape[" + std::to_string(i) + "]"));
  }
  // numel and byte size in u64 with overflow checks; dims must also fit Shape's int64.
  uint64_t numel = 1;
  bool overflow = false;
  for (uint64_t d : dims) {
    if (d > (uint64_t{1} << 53)) overflow = true;
    if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / d) overflow = true;
    else numel *= d;
  }
  const uint64_t size = st_dtype_size(e.dtype);
  if (!overflow && numel > std::numeric_limits<uint64_t>::max() / size) overflow = true;
  if (overflow) bad(path, who + " has shape " + u64_list(dims) + " whose size overflows");
  for (uint64_t d : dims) e.shape.push_back(static_cast<int64_t>(d));
  if (offsets->kind != Json::Array || offsets->items.size() != 2) {
    bad(path, who + " data_offsets must be an array [begin, end]");
  }
  e.begin = read_u64(offsets->items[0], path, who + " data_offsets[0]");
  e.end = read_u64(offsets->items[1], path, who + " data_offsets[1]");
  const std::string range = "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
  if (e.begin > e.end) bad(path, who + " has data_offsets " + range + " with begin after end");
  if (e.end > data_size) {
    bad(path, who + " has data_offsets " + range + " past the end of the data (" + std::to_string(data_size) + " bytes)");
  }
  if (e.end - e.begin != numel * size) {
    bad(path, who + " has data_offsets " + range + " but shape " + u64_list(dims) + " of " + st_dtype_name(e.dtype) +
                  " needs " + std::to_string(numel * size) + " bytes");
  }
  return e;
}

bool st_is_float(StDType d) {
  return d == StDType::F64 || d == StDType::F32 || d == StDType::F16 || d == StDType::BF16;
}

// One source element as double (floats) or int64 (integers); U8/BOOL are unsigned bytes.
double load_float(StDType d, const uint8_t* p) {
  switch (d) {
    case StDType::F64: {
      double v;
      std::memcpy(&v, p, 8);
      return v;
    }
    case StDType::F32: {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case StDType::F16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return f16_to_float(h);
    }
    default: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return bf16_to_float(h);
    }
  }
}

int64_t load_int(StDType d, const uint8_t* p) {
  switch (d) {
    case StDType::I64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return v;
    }
    case StDType::I32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case StDType::I16: {
      int16_t v;
      std::memcpy(&v, p, 2);
      return v;
    }
    case StDType::I8: return static_cast<int8_t>(*p);
    default: return *p;  // U8, BOOL
  }
}

bool same_layout(StDType s, DType d) {
  return (s == StDType::F32 && d == DType::F32) || (s == StDType::F16 && d == DType::F16) ||
         (s == StDType::BF16 && d == DType::BF16) || (s == StDType::I64 && d == DType::I64) ||
         (s == StDType::I32 && d == DType::I32) || ((s == StDType::U8 || s == StDType::BOOL) && d == DType::U8);
}

}  // namespace

const char* st_dtype_name(StDType d) {
  static const char* kNames[] = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"};
  return kNames[static_cast<int>(d)];
}

size_t st_dtype_size(StDType d) {
  static const size_t kSizes[] = {8, 4, 2, 2, 8, 4, 2, 1, 1, 1};
  return kSizes[static_cast<int>(d)];
}

DType natural_dtype(StDType d) {
  switch (d) {
    case StDType::F64:
    case StDType::F32: return DType::F32;
    case StDType::F16: return DType::F16;
    case StDType::BF16: return DType::BF16;
    case StDType::I64: return DType::I64;
    case StDType::I32:
    case StDType::I16:
    case StDType::I8: return DType::I32;
    default: return DType::U8;
  }
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) bad(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    bad(path, "not a regular file");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    bad(path, "is " + std::to_string(file_size) + " bytes, too short for a safetensors header (at least 8)");
  }
  void* m = mmap(nullptr, static_cast<size_t>(file_size), PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping keeps the file open
  if (m == MAP_FAILED) bad(path, std::string("cannot map the file: ") + std::strerror(errno));
  f->map_ = static_cast<const uint8_t*>(m);
  f->map_size_ = static_cast<size_t>(file_size);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | f->map_[i];  // little-endian on any host
  if (header_len > file_size - 8) {
    bad(path, "header length " + std::to_string(header_len) + " is larger than the rest of the file (" +
                  std::to_string(file_size - 8) + " bytes)");
  }
  if (header_len > kMaxSafetensorsHeader) {
    bad(path, "header length " + std::to_string(header_len) + " exceeds the " + std::to_string(kMaxSafetensorsHeader) +
                  "-byte limit");
  }
  const uint8_t* header = f->map_ + 8;
  size_t where = 0;
  if (!valid_utf8(header, static_cast<size_t>(header_len), &where)) {
    bad(path, "header is not valid UTF-8 (at byte " + std::to_string(where) + ")");
  }
  f->data_ = header + header_len;
  f->data_size_ = file_size - 8 - header_len;

  const Json doc = parse_json_object(path, reinterpret_cast<const char*>(header), static_cast<size_t>(header_len));
  for (const auto& m : doc.members) {
    if (m.first == "__metadata__") {
      if (m.second.kind != Json::Object) bad(path, "__metadata__ must be an object of strings");
      for (const auto& kv : m.second.members) {
        if (kv.second.kind != Json::String) {
          bad(path, "__metadata__ '" + kv.first + "' must be a string, got " + json_kind_name(kv.second.kind));
        }
        f->metadata_[kv.first] = kv.second.text;
      }
      continue;
    }
    f->entries_.push_back(read_entry(path, m.first, m.second, f->data_size_));
  }
  // Overlap check: sorted by begin, each non-empty range must start at or after the previous end.
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : f->entries_) {
    if (e.end > e.begin) by_offset.push_back(&e);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const SafetensorsEntry* a, const SafetensorsEntry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const SafetensorsEntry& a = *by_offset[i - 1];
    const SafetensorsEntry& b = *by_offset[i];
    if (b.begin < a.end) {
      bad(path, "tensor '" + b.name + "' (bytes " + std::to_string(b.begin) + ".." + std::to_string(b.end) +
                    ") overlaps tensor '" + a.name + "' (bytes " + std::to_string(a.begin) + ".." + std::to_string(a.end) + ")");
    }
  }
  std::sort(f->entries_.begin(), f->entries_.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.name < b.name; });
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(const_cast<uint8_t*>(map_), map_size_);
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const SafetensorsEntry& e, const std::string& n) { return e.name < n; });
  return it != entries_.end() && it->name == name ? &*it : nullptr;
}

const SafetensorsEntry& SafetensorsFile::get(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) bad(path_, "has no tensor '" + name + "' (" + std::to_string(entries_.size()) + " tensors in the file)");
  return *e;
}

Tensor SafetensorsFile::allocate(const SafetensorsEntry& e, DType to) const {
  const bool from_float = st_is_float(e.dtype);
  if (from_float != is_floating(to)) {
    bad(path_, "tensor '" + e.name + "' is " + st_dtype_name(e.dtype) + " and cannot be loaded as " + dtype_name(to) +
                   " (floats load as f32/f16/bf16, integers as i32/i64/u8)");
  }
  try {
    return Tensor::empty(e.shape, to, Device::cpu());
  } catch (const Error& err) {
    if (err.code() != ErrorCode::InvalidArgument) throw;
    bad(path_, "tensor '" + e.name + "': " + err.what());
  }
}

void SafetensorsFile::fill(const SafetensorsEntry& e, const Tensor& out) const {
  const uint8_t* src = data_ + e.begin;  // begin..end was checked against the mapping in open()
  const size_t n = static_cast<size_t>(out.numel());
  uint8_t* dst = static_cast<uint8_t*>(out.data());
  if (same_layout(e.dtype, out.dtype)) {
    if (n) std::memcpy(dst, src, e.end - e.begin);
    return;
  }
  const size_t step = st_dtype_size(e.dtype);
  if (is_floating(out.dtype)) {
    for (size_t i = 0; i < n; ++i) {
      const float v = static_cast<float>(load_float(e.dtype, src + i * step));
      if (out.dtype == DType::F32) {
        std::memcpy(dst + i * 4, &v, 4);
      } else {
        const uint16_t h = out.dtype == DType::F16 ? float_to_f16(v) : float_to_bf16(v);
        std::memcpy(dst + i * 2, &h, 2);
      }
    }
    return;
  }
  const int64_t lo = out.dtype == DType::I64 ? std::numeric_limits<int64_t>::min()
                     : out.dtype == DType::I32 ? std::numeric_limits<int32_t>::min() : 0;
  const int64_t hi = out.dtype == DType::I64 ? std::numeric_limits<int64_t>::max()
                     : out.dtype == DType::I32 ? std::numeric_limits<int32_t>::max() : 255;
  for (size_t i = 0; i < n; ++i) {
    const int64_t v = load_int(e.dtype, src + i * step);
    if (v < lo || v > hi) {
      bad(path_, "tensor '" + e.name + "' element " + std::to_string(i) + " = " + std::to_string(v) +
                     " does not fit in " + dtype_name(out.dtype));
    }
    if (out.dtype == DType::I64) {
      std::memcpy(dst + i * 8, &v, 8);
    } else if (out.dtype == DType::I32) {
      const int32_t w = static_cast<int32_t>(v);
      std::memcpy(dst + i * 4, &w, 4);
    } else {
      dst[i] = static_cast<uint8_t>(v);
    }
  }
}

Tensor SafetensorsFile::load_tensor(const std::string& name, DType to, const Device& device) const {
  if (!device.is_cpu()) {
    fail(ErrorCode::Unsupported, path_ + ": loading straight to " + device.str() + " is not supported; load to cpu, then move");
  }
  const SafetensorsEntry& e = get(name);
  Tensor t = allocate(e, to);
  fill(e, t);
  return t;
}

// ---- Writer ---------------------------------------------------------------

namespace {

const char* file_dtype(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    default: return "U8";
  }
}

void write_all(int fd, const uint8_t* p, size_t n, const std::string& tmp) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("write to " + tmp + " failed: " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

void check_safetensors_inputs(const std::string& path, const std::map<std::string, Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  if (path.empty()) fail(ErrorCode::InvalidArgument, "saveSafetensors: the path is empty");
  for (const auto& kv : tensors) {
    if (kv.first.empty()) bad(path, "a tensor name is empty");
    if (kv.first == "__metadata__") bad(path, "'__metadata__' is reserved and cannot name a tensor");
    if (!kv.second.device.is_cpu()) {
      fail(ErrorCode::DeviceMismatch, path + ": tensor '" + kv.first + "' is " + kv.second.describe() +
                                          "; only cpu tensors can be saved (move it with tensor.to('cpu'))");
    }
  }
}

void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  check_safetensors_inputs(path, tensors, metadata);
  // std::map iterates in name order, which is the order the data is laid out in.
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (auto it = metadata.begin(); it != metadata.end(); ++it) {
      if (it != metadata.begin()) header += ',';
      json_string(header, it->first);
      header += ':';
      json_string(header, it->second);
    }
    header += '}';
    first = false;
  }
  uint64_t offset = 0;
  for (const auto& kv : tensors) {
    const Tensor& t = kv.second;
    if (!first) header += ',';
    first = false;
    json_string(header, kv.first);
    header += ":{\"dtype\":\"";
    header += file_dtype(t.dtype);
    header += "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) header += (i ? "," : "") + std::to_string(t.shape[i]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + ",";
    offset += t.nbytes();
    header += std::to_string(offset) + "]}";
  }
  header += '}';
  // Spaces pad the header so the data starts 8-byte aligned (readers trim JSON whitespace).
  header.append((8 - header.size() % 8) % 8, ' ');

  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) bad(path, "cannot create " + tmp + ": " + std::strerror(errno));
  bool open_fd = true;
  try {
    uint8_t len[8];
    uint64_t h = header.size();
    for (int i = 0; i < 8; ++i, h >>= 8) len[i] = static_cast<uint8_t>(h & 0xff);
    write_all(fd, len, 8, tmp);
    write_all(fd, reinterpret_cast<const uint8_t*>(header.data()), header.size(), tmp);
    for (const auto& kv : tensors) {
      // Imprint stores every dtype little-endian, exactly as the format wants.
      write_all(fd, static_cast<const uint8_t*>(kv.second.data()), kv.second.nbytes(), tmp);
    }
    if (::fsync(fd) != 0) throw std::runtime_error("fsync of " + tmp + " failed: " + std::strerror(errno));
    open_fd = false;
    if (::close(fd) != 0) throw std::runtime_error("closing " + tmp + " failed: " + std::strerror(errno));
  } catch (const std::exception& e) {
    if (open_fd) ::close(fd);
    ::unlink(tmp.c_str());
    bad(path, e.what());
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    bad(path, std::string("cannot replace the file: ") + std::strerror(err));
  }
  // Make the rename itself durable; failure here leaves a complete file either way.
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace io
}  // namespace imprint
