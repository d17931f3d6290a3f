#include "common/threads.h"
#include "napi/handles.h"

namespace {

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  using namespace heimdall::napi;
  // The JavaScript thread never starts an OpenMP team (common/threads.h): the training step's team would
  // then share the process with it, and libgomp stops spin-waiting once its threads outnumber the CPUs.
  heimdall::use_one_intraop_thread_here();
  InitInfo(env, exports);
  InitModel(env, exports);
  InitDataset(env, exports);
  InitEngine(env, exports);
  InitData(env, exports);
  InitOnnx(env, exports);
  InitDist(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(heimdall_torch, InitAddon)
