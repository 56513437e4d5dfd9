// Runs an op's Launch on its device queue, off the JavaScript thread, and
// returns a Promise that resolves to the output tensor or rejects with an
// ImprintError.
#pragma once
#include <napi.h>

#include "ops/ops.h"

namespace imprint {
namespace napi {

Napi::Value run_async(Napi::Env env, ops::Launch launch);
// Same, resolving to an array of handles (launch.outputs), for nnOp.
Napi::Value run_async_outputs(Napi::Env env, ops::Launch launch);

// Creates the completion channel; called once per environment at load.
void init_completions(Napi::Env env);

}  // namespace napi
}  // namespace imprint
