// torchInfo(): what libtorch this addon runs on and what it can see.
#include <dlfcn.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include "common/threads.h"
#include "errors.h"
#include "napi/handles.h"
#include "train/engine.h"

namespace heimdall::napi {
namespace {

// Device names come from the CUDA runtime libtorch already loaded (no CUDA headers needed at build time):
// cudaDeviceProp begins with `char name[256]`.
std::string cuda_device_name(int index) {
  using GetProps = int (*)(void*, int);
  void* sym = dlsym(RTLD_DEFAULT, "cudaGetDeviceProperties_v2");
  if (!sym) sym = dlsym(RTLD_DEFAULT, "cudaGetDeviceProperties");
  if (!sym) return "CUDA device " + std::to_string(index);
  alignas(16) char props[8192] = {0};
  if (reinterpret_cast<GetProps>(sym)(props, index) != 0) return "CUDA device " + std::to_string(index);
  props[255] = '\0';
  return std::string(props);
}

Napi::Value TorchInfo(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("libtorch", torch_version());
    o.Set("heimdallTorch", HEIMDALL_VERSION);
    auto& hooks = at::detail::getCUDAHooks();
    const bool cuda_build = hooks.isBuilt();  // libtorch compiled with CUDA (a driver is not needed for this)
    const int gpus = at::hasCUDA() ? hooks.getNumGPUs() : 0;
    o.Set("cudaBuild", cuda_build);
    o.Set("cudaAvailable", gpus > 0);
    Napi::Array devices = Napi::Array::New(env);
    devices.Set(0u, Napi::String::New(env, "cpu"));
    for (int i = 0; i < gpus; ++i) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("index", i);
      d.Set("name", cuda_device_name(i));
      devices.Set(static_cast<uint32_t>(i + 1), d);
    }
    o.Set("cudaDevices", devices);
    o.Set("cudaDeviceCount", gpus);
    if (cuda_build) {
      o.Set("cudaRuntime", static_cast<double>(hooks.versionCUDART()));
      o.Set("cudnn", hooks.hasCuDNN() ? Napi::Value(Napi::Number::New(env, static_cast<double>(hooks.versionCuDNN())))
                                      : env.Null());
    } else {
      o.Set("cudaRuntime", env.Null());
      o.Set("cudnn", env.Null());
    }
    o.Set("threads", heimdall::default_intraop_threads());  // what an engine without a `threads` option uses
    o.Set("interopThreads", at::get_num_interop_threads());
    o.Set("parallelInfo", at::get_parallel_info());
    // Process-wide algorithm flags (Trainer({ deterministic, benchmark }) sets them)
    auto& ctx = at::globalContext();
    o.Set("deterministicAlgorithms", ctx.deterministicAlgorithms() ? (ctx.deterministicAlgorithmsWarnOnly() ? "warn" : "on") : "off");
    o.Set("deterministicCudnn", ctx.deterministicCuDNN());
    o.Set("cudnnBenchmark", ctx.benchmarkCuDNN());
    return o;
  });
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1)
      throw heimdall::Error(kErrInvalidArgument, "threads must be an integer ≥ 1");
    // Engines without their own `threads` option use it from their next operation (common/threads.h).
    heimdall::set_default_intraop_threads(info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
  });
}

}  // namespace

void InitInfo(Napi::Env env, Napi::Object exports) {
  exports.Set("torchInfo", Napi::Function::New(env, TorchInfo, "torchInfo"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
}

}  // namespace heimdall::napi
