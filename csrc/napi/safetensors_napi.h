#pragma once
#include <napi.h>

namespace imprint {
namespace napi {

// Adds safetensorsHeader, safetensorsLoad and safetensorsSave to the exports.
void register_safetensors(Napi::Env env, Napi::Object exports);

}  // namespace napi
}  // namespace imprint
