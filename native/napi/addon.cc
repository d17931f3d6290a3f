#include "napi/handles.h"

namespace {

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  using namespace heimdall::napi;
  InitInfo(env, exports);
  InitModel(env, exports);
  InitDataset(env, exports);
  InitEngine(env, exports);
  if (InitData) InitData(env, exports);
  if (InitOnnx) InitOnnx(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(heimdall_torch, InitAddon)
