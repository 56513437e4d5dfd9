#include "napi/async_op.h"

#include "core/executor.h"
#include "napi/errors.h"
#include "napi/state.h"
#include "napi/tensor_handle.h"

namespace imprint {
namespace napi {

struct PendingOp {
  Napi::Promise::Deferred deferred;
  ops::Launch launch;
  bool ok = false;
  ErrorCode code = ErrorCode::Internal;
  std::string message;
  bool all_outputs = false;  // resolve to an array of every output
};

void deliver_completion(Napi::Env env, Napi::Function, AddonState* s, PendingOp* op) {
  if (env == nullptr) {  // the environment is shutting down: nobody is waiting
    delete op;
    return;
  }
  Napi::HandleScope scope(env);
  if (op->ok && op->all_outputs) {
    Napi::Array list = Napi::Array::New(env, op->launch.outputs.size());
    for (size_t i = 0; i < op->launch.outputs.size(); ++i) {
      list.Set(static_cast<uint32_t>(i), TensorHandle::wrap(env, op->launch.outputs[i]));
    }
    op->deferred.Resolve(list);
  } else if (op->ok) {
    op->deferred.Resolve(TensorHandle::wrap(env, op->launch.output));
  } else {
    op->deferred.Reject(make_error(env, op->code, op->message));
  }
  delete op;  // drops the inputs' and output's extra references here, on the JS thread
  if (--s->in_flight == 0) s->completions->tsfn.Unref(env);
}

void init_completions(Napi::Env env) {
  AddonState& s = state(env);
  std::shared_ptr<CompletionChannel> channel = s.completions;
  channel->tsfn = CompletionTsfn::New(env, "imprint-completions", 0, 1, &s);
  channel->tsfn.Unref(env);  // idle: do not keep the process alive
  env.AddCleanupHook([channel] {
    std::lock_guard<std::mutex> lock(channel->mutex);
    channel->open = false;
    channel->tsfn.Release();
  });
}

namespace {

Napi::Value submit(Napi::Env env, ops::Launch launch, bool all_outputs) {
  AddonState& s = state(env);
  auto* op = new PendingOp{Napi::Promise::Deferred::New(env), std::move(launch), false, ErrorCode::Internal,
                           std::string(), all_outputs};
  Napi::Promise promise = op->deferred.Promise();
  if (s.in_flight++ == 0) s.completions->tsfn.Ref(env);  // pending work keeps the event loop alive
  std::shared_ptr<CompletionChannel> channel = s.completions;
  const Device queue = op->launch.queue;
  submit_to_queue(queue, [op, channel] {
    try {
      op->launch.run();
      op->ok = true;
    } catch (const Error& e) {
      op->code = e.code();
      op->message = e.what();
    } catch (const std::bad_alloc&) {
      op->code = ErrorCode::OutOfMemory;
      op->message = "out of host memory while running the op";
    } catch (const std::exception& e) {
      op->code = ErrorCode::Internal;
      op->message = std::string("internal error: ") + e.what();
    }
    std::lock_guard<std::mutex> lock(channel->mutex);
    // The queue is unbounded, so this never blocks while holding the mutex.
    if (!channel->open || channel->tsfn.NonBlockingCall(op) != napi_ok) delete op;
  });
  return promise;
}

}  // namespace

Napi::Value run_async(Napi::Env env, ops::Launch launch) { return submit(env, std::move(launch), false); }

Napi::Value run_async_outputs(Napi::Env env, ops::Launch launch) { return submit(env, std::move(launch), true); }

}  // namespace napi
}  // namespace imprint
