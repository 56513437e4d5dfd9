// A serial work queue per device, like a CUDA stream for the whole engine:
// ops submitted from JavaScript run in order on one native thread per device,
// off the JavaScript thread, and never compete with each other for the CPU
// thread pool or the GPU.
#pragma once
#include <functional>

#include "core/device.h"

namespace imprint {

// Runs `task` on the device's queue thread after every task submitted before it.
// The task must not throw (wrap its body; see csrc/napi/async_op.cc).
void submit_to_queue(const Device& device, std::function<void()> task);

// At process exit: drops queued tasks and waits for the running ones, so no
// native work (OpenBLAS, CUDA) is still running on a queue thread while the
// libraries' own exit code tears them down (OpenBLAS deadlocks otherwise).
// Registered with atexit when the addon loads; later submissions are dropped.
void shutdown_queues();

}  // namespace imprint
