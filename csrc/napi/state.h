// Per-environment addon state (main thread and each worker_thread get one).
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <mutex>

namespace imprint {
namespace napi {

struct PendingOp;
struct AddonState;

void deliver_completion(Napi::Env env, Napi::Function unused, AddonState* state, PendingOp* op);
using CompletionTsfn = Napi::TypedThreadSafeFunction<AddonState, PendingOp, deliver_completion>;

// The way back from the device queues to this environment. Queue threads may
// still finish ops while the environment shuts down (process.exit() during an
// op), so they post only while `open`, under the mutex the shutdown hook takes
// to close it; after that nothing touches the thread-safe function again.
struct CompletionChannel {
  std::mutex mutex;
  bool open = true;
  CompletionTsfn tsfn;
};

struct AddonState {
  Napi::FunctionReference error_class;   // lib's ImprintError, set by setErrorClass()
  Napi::FunctionReference tensor_class;  // TensorHandle constructor
  std::shared_ptr<CompletionChannel> completions = std::make_shared<CompletionChannel>();
  int64_t in_flight = 0;                 // ops submitted and not yet delivered
};

inline AddonState& state(Napi::Env env) { return *env.GetInstanceData<AddonState>(); }

}  // namespace napi
}  // namespace imprint
