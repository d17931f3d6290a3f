// NVIDIA GPU figures through NVML, opened at run time (nvml.cc): part of the loader shim's exports.
#pragma once

#include <node_api.h>

namespace heimdall_loader {

// Adds nvmlOpen(library?) and nvmlSample(library?) to the shim's exports.
void DefineNvml(napi_env env, napi_value exports);

}  // namespace heimdall_loader
