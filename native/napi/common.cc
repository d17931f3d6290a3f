// Error translation, the promise task, and argument helpers shared by the bindings.
#include <cstring>
#include <new>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "common/threads.h"
#include "errors.h"
#include "napi/handles.h"

namespace heimdall::napi {

ErrorInfo CaptureCurrentException() {
  try {
    throw;
  } catch (const heimdall::Error& e) {
    return {e.code(), e.what()};
  } catch (const c10::OutOfMemoryError& e) {
    return {"HEIMDALL_OUT_OF_MEMORY", std::string("out of memory: ") + e.what_without_backtrace() +
                                          " — use a smaller batchSize or model, or precision 'bf16-mixed'"};
  } catch (const c10::Error& e) {
    return {"HEIMDALL_TORCH_ERROR", std::string("libtorch: ") + e.what_without_backtrace()};
  } catch (const std::bad_alloc&) {
    return {"HEIMDALL_OUT_OF_MEMORY", "out of memory — use a smaller batchSize or model"};
  } catch (const Napi::Error& e) {
    return {"HEIMDALL_INVALID_ARGUMENT", e.Message()};
  } catch (const std::exception& e) {
    return {"HEIMDALL_INTERNAL", e.what()};
  } catch (...) {
    return {"HEIMDALL_INTERNAL", "unknown native error"};
  }
}

Napi::Error MakeError(Napi::Env env, const ErrorInfo& info) {
  Napi::Error err = Napi::Error::New(env, info.message);
  err.Set("code", Napi::String::New(env, info.code));
  return err;
}

Napi::Value Guard(Napi::Env env, const std::function<Napi::Value()>& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw MakeError(env, CaptureCurrentException());
  }
}

Task::Task(Napi::Env env, Work work, Done done, const char* name)
    : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), done_(std::move(done)) {}

Napi::Promise Task::Run(Napi::Env env, Work work, Done done, const char* name) {
  auto* task = new Task(env, std::move(work), std::move(done), name);
  Napi::Promise promise = task->deferred_.Promise();
  task->Queue();
  return promise;
}

void Task::Execute() {
  OneIntraopThread serial;  // libuv's pool threads start no OpenMP team of their own (common/threads.h)
  try {
    work_();
  } catch (...) {
    error_ = CaptureCurrentException();
    SetError(error_.message);
  }
}

void Task::OnOK() {
  try {
    deferred_.Resolve(done_ ? done_(Env()) : Env().Undefined());
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (...) {
    deferred_.Reject(MakeError(Env(), CaptureCurrentException()).Value());
  }
}

void Task::OnError(const Napi::Error&) { deferred_.Reject(MakeError(Env(), error_).Value()); }

// ---- arguments -----------------------------------------------------------------------------------------

namespace {
[[noreturn]] void bad(const Napi::Env& env, const std::string& msg) {
  throw MakeError(env, {kErrInvalidArgument, msg});
}
}  // namespace

double GetNumber(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) bad(o.Env(), std::string("option ") + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t GetInt(const Napi::Object& o, const char* key, int64_t fallback) {
  double d = GetNumber(o, key, static_cast<double>(fallback));
  if (d != static_cast<double>(static_cast<int64_t>(d))) bad(o.Env(), std::string("option ") + key + " must be an integer");
  return static_cast<int64_t>(d);
}

bool GetBool(const Napi::Object& o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean()) bad(o.Env(), std::string("option ") + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string GetString(const Napi::Object& o, const char* key, const std::string& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) bad(o.Env(), std::string("option ") + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::vector<int64_t> GetIntArray(const Napi::Object& o, const char* key, const std::vector<int64_t>& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsArray()) bad(o.Env(), std::string("option ") + key + " must be an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) bad(o.Env(), std::string("option ") + key + " must be an array of integers");
    out.push_back(e.As<Napi::Number>().Int64Value());
  }
  return out;
}

Napi::Object OptionsArg(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined() || info[index].IsNull()) return Napi::Object::New(info.Env());
  if (!info[index].IsObject()) bad(info.Env(), "options must be an object");
  return info[index].As<Napi::Object>();
}

std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsString()) bad(info.Env(), std::string(what) + " must be a string");
  return info[index].As<Napi::String>().Utf8Value();
}

at::Tensor TensorFromTypedArray(const Napi::Value& value, const std::vector<int64_t>& shape, const char* what) {
  Napi::Env env = value.Env();
  if (!value.IsTypedArray()) bad(env, std::string(what) + " must be a Float32Array, Int32Array or BigInt64Array");
  auto ta = value.As<Napi::TypedArray>();
  int64_t numel = 1;
  for (auto s : shape) {
    if (s < 0) bad(env, std::string(what) + ": shape entries must be ≥ 0");
    numel *= s;
  }
  if (static_cast<int64_t>(ta.ElementLength()) != numel) {
    bad(env, std::string(what) + " has " + std::to_string(ta.ElementLength()) + " elements but shape " +
                 c10::str(c10::IntArrayRef(shape)) + " needs " + std::to_string(numel));
  }
  const uint8_t* data = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  switch (ta.TypedArrayType()) {
    case napi_float32_array: {
      auto t = at::empty(shape, at::kFloat);
      std::memcpy(t.data_ptr(), data, numel * sizeof(float));
      return t;
    }
    case napi_int32_array: {
      auto t = at::empty(shape, at::kInt);
      std::memcpy(t.data_ptr(), data, numel * sizeof(int32_t));
      return t.to(at::kLong);
    }
    case napi_bigint64_array: {
      auto t = at::empty(shape, at::kLong);
      std::memcpy(t.data_ptr(), data, numel * sizeof(int64_t));
      return t;
    }
    default:
      bad(env, std::string(what) + " must be a Float32Array, Int32Array or BigInt64Array");
  }
}

Napi::Value TypedArrayFromTensor(Napi::Env env, const at::Tensor& tensor) {
  at::Tensor t = tensor.to(at::kCPU).contiguous();
  if (t.scalar_type() == at::kLong) {
    auto out = Napi::BigInt64Array::New(env, t.numel());
    std::memcpy(out.Data(), t.data_ptr(), t.numel() * sizeof(int64_t));
    return out;
  }
  t = t.to(at::kFloat);
  auto out = Napi::Float32Array::New(env, t.numel());
  std::memcpy(out.Data(), t.data_ptr(), t.numel() * sizeof(float));
  return out;
}

}  // namespace heimdall::napi
