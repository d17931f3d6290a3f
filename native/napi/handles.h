// Shared pieces of the Node-API binding. This folder is the only code that knows Node-API: it converts
// arguments, runs long work off the JavaScript thread, and turns C++ exceptions into JS errors.
//
// Adding a binding file: define `void heimdall::napi::InitXxx(Napi::Env, Napi::Object exports)` in
// native/napi/xxx_binding.cc, declare it below and call it in addon.cc.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <napi.h>

#include "data/dataset.h"
#include "dist/group.h"
#include "model/network.h"

namespace heimdall::napi {

// A model shared by its JS `Model` object, engines and exporters. Hold `mutex` while using `net`:
// async work locks it on its worker thread, so a save during a running epoch waits for the epoch.
struct ModelHandle {
  explicit ModelHandle(Network n) : net(std::move(n)) {}
  Network net;
  std::mutex mutex;
};
using ModelPtr = std::shared_ptr<ModelHandle>;

// Throws a JS TypeError naming `what` if the value is not a Model / native data set created by this addon.
ModelPtr UnwrapModel(const Napi::Value& value, const char* what = "model");
DatasetPtr UnwrapDataset(const Napi::Value& value, const char* what = "dataset");
GroupPtr UnwrapGroup(const Napi::Value& value, const char* what = "group");
Napi::Object WrapDataset(Napi::Env env, DatasetPtr dataset);

// ---- errors ------------------------------------------------------------------------------------------
struct ErrorInfo {
  std::string code;
  std::string message;
};
// Call inside a catch block: maps heimdall::Error (its code), c10 errors (message without the C++
// backtrace; out-of-memory gets its own code), std::bad_alloc and other std::exceptions.
ErrorInfo CaptureCurrentException();
Napi::Error MakeError(Napi::Env env, const ErrorInfo& info);
// Runs `fn` on the JS thread, rethrowing C++ exceptions as JS errors with a code.
Napi::Value Guard(Napi::Env env, const std::function<Napi::Value()>& fn);

// ---- async work: a Promise resolved on the JS thread after `work` ran on a worker thread ---------------
class Task : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  static Napi::Promise Run(Napi::Env env, Work work, Done done, const char* name = "heimdall-torch");

 private:
  Task(Napi::Env env, Work work, Done done, const char* name);
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  ErrorInfo error_;
};

// ---- argument helpers (the TypeScript layer validates with zod; these guard the boundary) -------------
double GetNumber(const Napi::Object& o, const char* key, double fallback);
int64_t GetInt(const Napi::Object& o, const char* key, int64_t fallback);
bool GetBool(const Napi::Object& o, const char* key, bool fallback);
std::string GetString(const Napi::Object& o, const char* key, const std::string& fallback);
std::vector<int64_t> GetIntArray(const Napi::Object& o, const char* key, const std::vector<int64_t>& fallback);
Napi::Object OptionsArg(const Napi::CallbackInfo& info, size_t index);  // {} when undefined
std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* what);
// A JS typed array copied into a new CPU tensor of `shape` (float32 / int32→int64 / bigint64).
at::Tensor TensorFromTypedArray(const Napi::Value& value, const std::vector<int64_t>& shape, const char* what);
Napi::Value TypedArrayFromTensor(Napi::Env env, const at::Tensor& t);  // Float32Array or BigInt64Array

// ---- registration -------------------------------------------------------------------------------------
void InitInfo(Napi::Env env, Napi::Object exports);
void InitModel(Napi::Env env, Napi::Object exports);
void InitDataset(Napi::Env env, Napi::Object exports);
void InitEngine(Napi::Env env, Napi::Object exports);
void InitData(Napi::Env env, Napi::Object exports);  // data_binding.cc (Heimdall data)
void InitOnnx(Napi::Env env, Napi::Object exports);  // onnx_binding.cc
void InitDist(Napi::Env env, Napi::Object exports);  // dist_binding.cc (process groups)

}  // namespace heimdall::napi
