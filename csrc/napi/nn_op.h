#pragma once
#include <napi.h>

namespace imprint {
namespace napi {

// Adds nnOp and nnOpNames to the module's exports.
void register_nn_op(Napi::Env env, Napi::Object exports);

}  // namespace napi
}  // namespace imprint
