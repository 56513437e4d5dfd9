// Kernels of the neural-network op library register themselves by name and
// device type (the CPU ones in csrc/cpu, the CUDA ones in cuda/), so an op can
// run on any device that has its kernel and says clearly when one does not.
#pragma once
#include <string>

#include "core/device.h"

namespace imprint {

// A kernel takes its launch description (a struct from core/nn_args.h) by pointer.
using KernelFn = void (*)(const void* args);

void register_kernel(const char* name, DeviceType device, KernelFn fn);
// The kernel `name` for `device`; throws UNSUPPORTED naming the op and device.
KernelFn find_kernel(const std::string& name, const Device& device);

struct KernelRegistrar {
  KernelRegistrar(const char* name, DeviceType device, KernelFn fn) { register_kernel(name, device, fn); }
};

// IMPRINT_REGISTER_KERNEL(conv2d_forward, CPU, Conv2dArgs, conv2d_forward_cpu)
// registers `void conv2d_forward_cpu(const Conv2dArgs&)` under "conv2d_forward".
#define IMPRINT_REGISTER_KERNEL(name, device, ArgsType, fn)                                             \
  static ::imprint::KernelRegistrar imprint_kernel_##name##_##device(                                   \
      #name, ::imprint::DeviceType::device, [](const void* args) { fn(*static_cast<const ArgsType*>(args)); })

}  // namespace imprint
