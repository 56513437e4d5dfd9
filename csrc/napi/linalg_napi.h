#pragma once
#include <napi.h>

namespace imprint {
namespace napi {

// Adds linalgInfo, linalgSymmetricEigen, linalgSvd and linalgSolve (csrc/cpu/lapack.h) to the exports.
void register_linalg(Napi::Env env, Napi::Object exports);

}  // namespace napi
}  // namespace imprint
