// Per-environment addon state (main thread and each worker_thread get one).
#pragma once
#include <napi.h>

#include <cstdint>

namespace imprint {
namespace napi {

struct PendingOp;
struct AddonState;

void deliver_completion(Napi::Env env, Napi::Function unused, AddonState* state, PendingOp* op);
using CompletionTsfn = Napi::TypedThreadSafeFunction<AddonState, PendingOp, deliver_completion>;

struct AddonState {
  Napi::FunctionReference error_class;   // lib's ImprintError, set by setErrorClass()
  Napi::FunctionReference tensor_class;  // TensorHandle constructor
  CompletionTsfn completions;            // queue threads hand finished ops back through it
  int64_t in_flight = 0;                 // ops submitted and not yet delivered
};

inline AddonState& state(Napi::Env env) { return *env.GetInstanceData<AddonState>(); }

}  // namespace napi
}  // namespace imprint
