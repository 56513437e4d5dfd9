// safetensors files (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype, shape
// and byte range, then the raw data. The reader memory-maps the file and
// validates the whole header before any tensor is touched, so a hostile file
// fails with one INVALID_ARGUMENT naming the file and entry, never a crash or
// a read past the mapping. The writer replaces the target atomically.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace imprint {
namespace io {

// The dtypes a safetensors file may hold (a superset of Imprint's DType).
enum class StDType : int { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

const char* st_dtype_name(StDType d);  // "F32", ... as written in the header
size_t st_dtype_size(StDType d);
// The Imprint dtype a file dtype loads as when none is asked for:
// F64 -> f32, I16/I8 -> i32, BOOL -> u8, the rest as themselves.
DType natural_dtype(StDType d);

struct SafetensorsEntry {
  std::string name;
  StDType dtype;
  Shape shape;
  uint64_t begin;  // byte range within the data section (after the header)
  uint64_t end;
};

// Headers above this are refused before parsing (real checkpoints use < 1 MB).
constexpr uint64_t kMaxSafetensorsHeader = 100ull * 1000 * 1000;

class SafetensorsFile {
 public:
  // Maps `path` read-only and validates it; throws INVALID_ARGUMENT naming the
  // path (and tensor) on anything malformed.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Sorted by name.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr when absent.
  const SafetensorsEntry* find(const std::string& name) const;
  // Throws INVALID_ARGUMENT naming the file and the missing tensor.
  const SafetensorsEntry& get(const std::string& name) const;

  // A new, uninitialised CPU tensor for `entry` loaded as `to`; throws
  // INVALID_ARGUMENT when the conversion is not allowed (float <-> integer)
  // or the shape cannot be an Imprint tensor.
  Tensor allocate(const SafetensorsEntry& entry, DType to) const;
  // Copies (converting) the entry's bytes into `out`, made by allocate().
  // Integer narrowing checks every value and names the first that does not fit.
  void fill(const SafetensorsEntry& entry, const Tensor& out) const;
  // allocate + fill on the calling thread. CPU only: other devices are
  // UNSUPPORTED here (lib moves the CPU tensor with tensor.to(device)).
  Tensor load_tensor(const std::string& name, DType to, const Device& device) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section within the mapping
  uint64_t data_size_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` (CPU tensors of any Imprint dtype) sorted by name with the
// given __metadata__, to path + ".tmp-<pid>", fsyncs it and renames it over
// `path`; on any failure the temporary file is removed and `path` is untouched.
// Reads the tensors' data on the calling thread: run it where their values are final.
void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata);
// The checks write_safetensors makes before touching the disk (CPU tensors,
// names), so callers can fail fast on the JavaScript thread.
void check_safetensors_inputs(const std::string& path, const std::map<std::string, Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata);

}  // namespace io
}  // namespace imprint
