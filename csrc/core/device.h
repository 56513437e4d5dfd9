// Where a tensor's memory lives: the host ("cpu") or one CUDA device ("cuda:N").
#pragma once
#include <string>

namespace imprint {

enum class DeviceType : int { CPU = 0, CUDA = 1 };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return Device{DeviceType::CPU, 0}; }
  static Device cuda(int index) { return Device{DeviceType::CUDA, index}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

// Parses "cpu", "cuda" (= cuda:0) and "cuda:N"; throws INVALID_ARGUMENT otherwise.
Device parse_device(const std::string& text);

}  // namespace imprint
