// The addon's safetensors entries (csrc/io/safetensors.h). Opening and
// validating a file, and allocating the outputs, happen on the JavaScript
// thread so errors are immediate; copying the data (load) and writing the file
// (save) run as an ops::Launch on the CPU queue. The queue, rather than a
// Napi::AsyncWorker, is used because it runs in order with earlier ops: a save
// sees the final values of tensors whose ops are still queued there.
#include "napi/safetensors_napi.h"

#include "io/safetensors.h"
#include "napi/async_op.h"
#include "napi/convert.h"
#include "napi/errors.h"
#include "napi/tensor_handle.h"

namespace imprint {
namespace napi {
namespace {

std::string read_string(const Napi::Value& v, const char* op, const char* what) {
  if (!v.IsString()) fail(ErrorCode::InvalidArgument, std::string(op) + ": " + what + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Array read_array(const Napi::Value& v, const char* op, const char* what) {
  if (!v.IsArray()) fail(ErrorCode::InvalidArgument, std::string(op) + ": " + what + " must be an array");
  return v.As<Napi::Array>();
}

// Entries come back as arrays, not objects keyed by tensor name, so a hostile
// name such as "__proto__" cannot reach an object's prototype.
Napi::Value header_fn(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto file = io::SafetensorsFile::open(read_string(info[0], "readSafetensorsHeader", "path"));
    Napi::Array tensors = Napi::Array::New(env, file->entries().size());
    uint32_t i = 0;
    for (const auto& e : file->entries()) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", e.name);
      o.Set("dtype", io::st_dtype_name(e.dtype));
      Napi::Array shape = Napi::Array::New(env, e.shape.size());
      for (uint32_t d = 0; d < e.shape.size(); ++d) shape.Set(d, static_cast<double>(e.shape[d]));
      o.Set("shape", shape);
      Napi::Array offsets = Napi::Array::New(env, 2);
      offsets.Set(0u, static_cast<double>(e.begin));  // below the file size, so exact
      offsets.Set(1u, static_cast<double>(e.end));
      o.Set("offsets", offsets);
      tensors.Set(i++, o);
    }
    Napi::Array metadata = Napi::Array::New(env, file->metadata().size());
    i = 0;
    for (const auto& kv : file->metadata()) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, kv.first);
      pair.Set(1u, kv.second);
      metadata.Set(i++, pair);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("tensors", tensors);
    out.Set("metadata", metadata);
    return out;
  });
}

// safetensorsLoad(path, names | null, dtype | null) -> Promise<TensorHandle[]>
// in the order of `names` (all tensors sorted by name when null). dtype null
// loads each tensor as its natural dtype (io::natural_dtype).
Napi::Value load_fn(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "loadSafetensors";
    auto file = io::SafetensorsFile::open(read_string(info[0], op, "path"));
    std::vector<const io::SafetensorsEntry*> entries;
    if (info[1].IsNull() || info[1].IsUndefined()) {
      for (const auto& e : file->entries()) entries.push_back(&e);
    } else {
      Napi::Array names = read_array(info[1], op, "names");
      for (uint32_t i = 0; i < names.Length(); ++i) entries.push_back(&file->get(read_string(names.Get(i), op, "a name")));
    }
    const bool natural = info[2].IsNull() || info[2].IsUndefined();
    const DType to = natural ? DType::F32 : to_dtype(info[2], op);
    ops::Launch launch;
    launch.queue = Device::cpu();
    for (const auto* e : entries) launch.outputs.push_back(file->allocate(*e, natural ? io::natural_dtype(e->dtype) : to));
    if (!launch.outputs.empty()) launch.output = launch.outputs[0];
    // The lambda holds the file, so the mapping outlives the copy.
    std::vector<Tensor> outs = launch.outputs;
    launch.run = [file, entries, outs] {
      for (size_t i = 0; i < entries.size(); ++i) file->fill(*entries[i], outs[i]);
    };
    return run_async_outputs(info.Env(), std::move(launch));
  });
}

// safetensorsSave(path, names, handles, metadata: [key, value][]) -> Promise<[]>
Napi::Value save_fn(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* op = "saveSafetensors";
    const std::string path = read_string(info[0], op, "path");
    Napi::Array names = read_array(info[1], op, "names");
    Napi::Array handles = read_array(info[2], op, "tensors");
    if (names.Length() != handles.Length()) fail(ErrorCode::InvalidArgument, std::string(op) + ": names and tensors differ in length");
    std::map<std::string, Tensor> tensors;
    for (uint32_t i = 0; i < names.Length(); ++i) {
      const std::string name = read_string(names.Get(i), op, "a tensor name");
      const std::string what = "tensor '" + name + "'";
      if (!tensors.emplace(name, TensorHandle::unwrap(handles.Get(i), op, what.c_str())).second) {
        fail(ErrorCode::InvalidArgument, path + ": tensor name '" + name + "' appears twice");
      }
    }
    std::map<std::string, std::string> metadata;
    if (!info[3].IsUndefined() && !info[3].IsNull()) {
      Napi::Array pairs = read_array(info[3], op, "metadata");
      for (uint32_t i = 0; i < pairs.Length(); ++i) {
        Napi::Array pair = read_array(pairs.Get(i), op, "a metadata entry");
        metadata[read_string(pair.Get(0u), op, "a metadata key")] = read_string(pair.Get(1u), op, "a metadata value");
      }
    }
    io::check_safetensors_inputs(path, tensors, metadata);
    ops::Launch launch;
    launch.queue = Device::cpu();
    for (const auto& kv : tensors) launch.inputs.push_back(kv.second);
    launch.run = [path, tensors, metadata] { io::write_safetensors(path, tensors, metadata); };
    return run_async_outputs(info.Env(), std::move(launch));
  });
}

}  // namespace

void register_safetensors(Napi::Env env, Napi::Object exports) {
  exports.Set("safetensorsHeader", Napi::Function::New(env, header_fn, "safetensorsHeader"));
  exports.Set("safetensorsLoad", Napi::Function::New(env, load_fn, "safetensorsLoad"));
  exports.Set("safetensorsSave", Napi::Function::New(env, save_fn, "safetensorsSave"));
}

}  // namespace napi
}  // namespace imprint
