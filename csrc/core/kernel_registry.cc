#include "core/kernel_registry.h"

#include <map>
#include <mutex>
#include <utility>

#include "core/error.h"

namespace imprint {
namespace {

// Function-local so registration from other files' static initializers is safe.
std::map<std::pair<std::string, int>, KernelFn>& table() {
  static auto* t = new std::map<std::pair<std::string, int>, KernelFn>();
  return *t;
}
std::mutex& table_mutex() {
  static auto* m = new std::mutex();
  return *m;
}

}  // namespace

void register_kernel(const char* name, DeviceType device, KernelFn fn) {
  std::lock_guard<std::mutex> lock(table_mutex());
  table()[{name, static_cast<int>(device)}] = fn;
}

KernelFn find_kernel(const std::string& name, const Device& device) {
  std::lock_guard<std::mutex> lock(table_mutex());
  auto it = table().find({name, static_cast<int>(device.type)});
  if (it == table().end()) {
    fail(ErrorCode::Unsupported, name + " has no " + (device.is_cpu() ? "CPU" : "CUDA") + " kernel yet (requested on " +
                                     device.str() + ")");
  }
  return it->second;
}

}  // namespace imprint
