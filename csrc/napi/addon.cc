// Module entry: the native surface declared in typings/native.d.ts.
#include <napi.h>

#include <cstdlib>
#include <mutex>
#include <thread>

#include "core/backend.h"
#include "core/executor.h"
#include "core/memory.h"
#include "core/philox.h"
#include "core/thread_pool.h"
#include "cpu/blas.h"
#include "cpu/cpu_isa.h"
#include "napi/async_op.h"
#include "napi/convert.h"
#include "napi/errors.h"
#include "napi/linalg_napi.h"
#include "napi/nn_op.h"
#include "napi/safetensors_napi.h"
#include "napi/state.h"
#include "napi/tensor_handle.h"
#include "ops/ops.h"

namespace imprint {
namespace napi {
namespace {

using Info = const Napi::CallbackInfo&;

Napi::Value set_error_class(Info info) {
  if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "setErrorClass needs a constructor");
  state(info.Env()).error_class = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Value build_info(Info info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  CudaStatus cuda = cuda_status();
  o.Set("blas", blas_name());
  o.Set("cuda", cuda.built);
  o.Set("cudaRuntimeVersion", cuda.runtime_version);
  o.Set("napiVersion", NAPI_VERSION);
  return o;
}

Napi::Value devices(Info info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("cores", static_cast<double>(std::thread::hardware_concurrency()));
  cpu.Set("threads", num_threads());
  // simd: what Imprint's own kernels use (IMPRINT_CPU_ISA may cap it); simdDetected: what the CPU has.
  cpu.Set("simd", cpu::cpu_isa_name(cpu::cpu_isa()));
  cpu.Set("simdDetected", cpu::cpu_isa_name(cpu::cpu_isa_detected()));
  uint64_t free_b = 0, total_b = 0;
  cpu_backend().device_memory(&free_b, &total_b);
  cpu.Set("totalMemory", static_cast<double>(total_b));
  o.Set("cpu", cpu);

  CudaStatus status = cuda_status();
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("built", status.built);
  cuda.Set("available", status.available);
  if (!status.available) cuda.Set("reason", status.reason);
  cuda.Set("runtimeVersion", status.runtime_version);
  cuda.Set("driverVersion", status.driver_version);
  if (status.available) cuda.Set("gemmLibrary", status.gemm_library);
  Napi::Array list = Napi::Array::New(env, status.devices.size());
  for (size_t i = 0; i < status.devices.size(); ++i) {
    const CudaDeviceInfo& d = status.devices[i];
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("index", d.index);
    dev.Set("device", "cuda:" + std::to_string(d.index));
    dev.Set("name", d.name);
    dev.Set("totalMemory", static_cast<double>(d.total_memory));
    dev.Set("freeMemory", static_cast<double>(d.free_memory));
    dev.Set("computeCapability", std::to_string(d.compute_major) + "." + std::to_string(d.compute_minor));
    dev.Set("multiprocessors", d.multiprocessors);
    list.Set(static_cast<uint32_t>(i), dev);
  }
  cuda.Set("devices", list);
  o.Set("cuda", cuda);
  return o;
}

Napi::Value memory_stats_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Device device = to_device(info[0], "memoryStats");
    Backend& backend = backend_for(device);  // throws for an unusable device
    MemoryStats s = memory_stats(device);
    uint64_t free_b = 0, total_b = 0;
    backend.device_memory(&free_b, &total_b);
    Napi::Object o = Napi::Object::New(env);
    o.Set("device", device.str());
    o.Set("liveBytes", static_cast<double>(s.live_bytes));
    o.Set("peakBytes", static_cast<double>(s.peak_bytes));
    o.Set("liveAllocations", static_cast<double>(s.live_allocations));
    o.Set("totalAllocations", static_cast<double>(s.total_allocations));
    o.Set("limitBytes", static_cast<double>(s.limit_bytes));
    o.Set("cachedBytes", static_cast<double>(backend.cached_bytes()));
    o.Set("deviceFreeBytes", static_cast<double>(free_b));
    o.Set("deviceTotalBytes", static_cast<double>(total_b));
    return o;
  });
}

Napi::Value empty_cache_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    backend_for(to_device(info[0], "emptyCache")).empty_cache();
    return info.Env().Undefined();
  });
}

Napi::Value reset_peak_memory_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Device device = to_device(info[0], "resetPeakMemory");
    backend_for(device);
    reset_peak_memory(device);
    return info.Env().Undefined();
  });
}

Napi::Value set_memory_limit_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Device device = to_device(info[0], "setMemoryLimit");
    backend_for(device);
    set_memory_limit(device, to_u64(info[1], "setMemoryLimit", "bytes"));
    return info.Env().Undefined();
  });
}

Napi::Value num_threads_fn(Info info) { return Napi::Number::New(info.Env(), num_threads()); }

Napi::Value set_num_threads_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    double n = to_number(info[0], "setNumThreads", "threads");
    if (!(n >= 1 && n <= 1024) || n != static_cast<int>(n)) {
      fail(ErrorCode::InvalidArgument, "setNumThreads: threads must be an integer from 1 to 1024");
    }
    set_num_threads(static_cast<int>(n));
    return info.Env().Undefined();
  });
}

Napi::Value from_buffer(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() && !info[0].IsDataView()) {
      fail(ErrorCode::InvalidArgument, "fromBuffer: data must be a TypedArray or DataView");
    }
    Shape shape = to_shape(info[1], "fromBuffer");
    DType src_dtype = to_dtype(info[2], "fromBuffer");
    DType dtype = info[3].IsUndefined() ? src_dtype : to_dtype(info[3], "fromBuffer");
    const void* data;
    size_t bytes;
    if (info[0].IsTypedArray()) {
      Napi::TypedArray view = info[0].As<Napi::TypedArray>();
      data = static_cast<const uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
      bytes = view.ByteLength();
    } else {
      Napi::DataView view = info[0].As<Napi::DataView>();
      data = static_cast<const uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
      bytes = view.ByteLength();
    }
    return TensorHandle::wrap(info.Env(), ops::from_host(data, bytes, shape, src_dtype, dtype));
  });
}

Napi::Value reshape_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Tensor& a = TensorHandle::unwrap(info[0], "reshape", "input");
    return TensorHandle::wrap(info.Env(), ops::reshape(a, to_shape(info[1], "reshape")));
  });
}

Napi::Value matmul_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Tensor& a = TensorHandle::unwrap(info[0], "matmul", "a");
    const Tensor& b = TensorHandle::unwrap(info[1], "matmul", "b");
    return run_async(info.Env(), ops::matmul(a, b, to_bool(info[2], "matmul", "transposeA"),
                                             to_bool(info[3], "matmul", "transposeB")));
  });
}

template <BinaryOp op>
Napi::Value binary_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* name = op == BinaryOp::Add ? "add" : "mul";
    const Tensor& a = TensorHandle::unwrap(info[0], name, "a");
    const Tensor& b = TensorHandle::unwrap(info[1], name, "b");
    return run_async(info.Env(), ops::binary(op, a, b));
  });
}

Napi::Value sum_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Tensor& a = TensorHandle::unwrap(info[0], "sum", "input");
    return run_async(info.Env(), ops::sum(a, to_int_list(info[1], "sum", "dims"), to_bool(info[2], "sum", "keepDims")));
  });
}

Napi::Value cast_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Tensor& a = TensorHandle::unwrap(info[0], "cast", "input");
    return run_async(info.Env(), ops::cast(a, to_dtype(info[1], "cast")));
  });
}

Napi::Value to_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Tensor& a = TensorHandle::unwrap(info[0], "to", "input");
    return run_async(info.Env(), ops::to_device(a, to_device(info[1], "to")));
  });
}

template <RandomKind kind>
Napi::Value random_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const char* name = kind == RandomKind::Uniform ? "rand" : "randn";
    return run_async(info.Env(),
                     ops::random(kind, to_shape(info[0], name), to_dtype(info[1], name), to_device(info[2], name),
                                 to_u64(info[3], name, "seed"), to_u64(info[4], name, "offset"),
                                 static_cast<float>(to_number(info[5], name, "a")),
                                 static_cast<float>(to_number(info[6], name, "b"))));
  });
}

Napi::Value full_fn(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return run_async(info.Env(), ops::full(to_shape(info[0], "full"), to_dtype(info[1], "full"),
                                           to_device(info[2], "full"), to_number(info[3], "full", "value")));
  });
}

// Test hook: one raw Philox4x32-10 block, for known-answer tests.
Napi::Value philox_block(Info info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    std::vector<int64_t> ctr = to_int_list(info[0], "philox", "counter");
    std::vector<int64_t> key = to_int_list(info[1], "philox", "key");
    if (ctr.size() != 4 || key.size() != 2) fail(ErrorCode::InvalidArgument, "philox: counter has 4 words, key 2");
    auto w = [](int64_t v) { return static_cast<uint32_t>(v); };
    philox::Block b = philox::philox4x32_10(w(ctr[0]), w(ctr[1]), w(ctr[2]), w(ctr[3]), w(key[0]), w(key[1]));
    Napi::Array out = Napi::Array::New(info.Env(), 4);
    for (uint32_t i = 0; i < 4; ++i) out.Set(i, Napi::Number::New(info.Env(), b.v[i]));
    return out;
  });
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  static std::once_flag at_exit_once;
  std::call_once(at_exit_once, [] { std::atexit(shutdown_queues); });
  auto* s = new AddonState();
  env.SetInstanceData<AddonState>(s);
  s->tensor_class = Napi::Persistent(TensorHandle::define(env));
  init_completions(env);

  exports.Set("TensorHandle", s->tensor_class.Value());
  auto fn = [&](const char* name, Napi::Value (*f)(Info)) { exports.Set(name, Napi::Function::New(env, f, name)); };
  fn("setErrorClass", set_error_class);
  fn("buildInfo", build_info);
  fn("devices", devices);
  fn("memoryStats", memory_stats_fn);
  fn("resetPeakMemory", reset_peak_memory_fn);
  fn("emptyCache", empty_cache_fn);
  fn("setMemoryLimit", set_memory_limit_fn);
  fn("numThreads", num_threads_fn);
  fn("setNumThreads", set_num_threads_fn);
  fn("fromBuffer", from_buffer);
  fn("reshape", reshape_fn);
  fn("matmul", matmul_fn);
  fn("add", binary_fn<BinaryOp::Add>);
  fn("mul", binary_fn<BinaryOp::Mul>);
  fn("sum", sum_fn);
  fn("cast", cast_fn);
  fn("to", to_fn);
  fn("rand", random_fn<RandomKind::Uniform>);
  fn("randn", random_fn<RandomKind::Normal>);
  fn("full", full_fn);
  fn("philoxBlock", philox_block);
  register_nn_op(env, exports);
  register_safetensors(env, exports);
  register_linalg(env, exports);
  return exports;
}

}  // namespace
}  // namespace napi
}  // namespace imprint

static Napi::Object InitImprint(Napi::Env env, Napi::Object exports) { return imprint::napi::init(env, exports); }
NODE_API_MODULE(imprint, InitImprint)
