// Native data sets as JS objects: tensors from typed arrays, subsets, and the reference split.
#include <ATen/ATen.h>

#include "data/tensor_dataset.h"
#include "errors.h"
#include "napi/handles.h"

namespace heimdall::napi {
namespace {

Napi::Array ShapeToJs(Napi::Env env, const std::vector<int64_t>& s) {
  Napi::Array a = Napi::Array::New(env, s.size());
  for (size_t i = 0; i < s.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(s[i])));
  return a;
}

std::vector<int64_t> IntArrayArg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsArray())
    throw heimdall::Error(kErrInvalidArgument, std::string(what) + " must be an array of integers");
  Napi::Array a = info[index].As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value v = a.Get(i);
    if (!v.IsNumber()) throw heimdall::Error(kErrInvalidArgument, std::string(what) + " must be an array of integers");
    out[i] = v.As<Napi::Number>().Int64Value();
  }
  return out;
}

class DatasetWrap : public Napi::ObjectWrap<DatasetWrap> {
 public:
  static Napi::FunctionReference* constructor;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(env, "NativeDataset",
                                     {
                                         InstanceAccessor<&DatasetWrap::Size>("size"),
                                         InstanceAccessor<&DatasetWrap::InputShape>("inputShape"),
                                         InstanceAccessor<&DatasetWrap::TargetShape>("targetShape"),
                                         InstanceMethod<&DatasetWrap::Describe>("describe"),
                                     });
    constructor = new Napi::FunctionReference(Napi::Persistent(cls));
    exports.Set("NativeDataset", cls);
  }

  // Not constructible from JS directly: WrapDataset() fills `dataset_` right after construction.
  explicit DatasetWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DatasetWrap>(info) {}

  DatasetPtr dataset_;

 private:
  void check(Napi::Env env) const {
    if (!dataset_) throw MakeError(env, {kErrInvalidArgument, "NativeDataset objects come from heimdall-torch's data functions"});
  }
  Napi::Value Size(const Napi::CallbackInfo& info) {
    check(info.Env());
    return Napi::Number::New(info.Env(), static_cast<double>(dataset_->size()));
  }
  Napi::Value InputShape(const Napi::CallbackInfo& info) {
    check(info.Env());
    return ShapeToJs(info.Env(), dataset_->input_shape());
  }
  Napi::Value TargetShape(const Napi::CallbackInfo& info) {
    check(info.Env());
    return ShapeToJs(info.Env(), dataset_->target_shape());
  }
  Napi::Value Describe(const Napi::CallbackInfo& info) {
    check(info.Env());
    return Napi::String::New(info.Env(), dataset_->describe());
  }
};

Napi::FunctionReference* DatasetWrap::constructor = nullptr;

// tensorDataset(inputs, inputShape, targets?, targetShape?)   inputShape/targetShape include the sample axis.
Napi::Value TensorDatasetFn(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    auto shape = IntArrayArg(info, 1, "inputShape");
    at::Tensor inputs = TensorFromTypedArray(info[0], shape, "inputs");
    at::Tensor targets;
    if (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull()) {
      auto tshape = IntArrayArg(info, 3, "targetShape");
      targets = TensorFromTypedArray(info[2], tshape, "targets");
    }
    if (!at::isfinite(inputs).all().item<bool>())
      throw heimdall::Error(kErrInvalidArgument, "inputs contain NaN or Inf values; clean or impute them before training");
    if (targets.defined() && targets.is_floating_point() && !at::isfinite(targets).all().item<bool>())
      throw heimdall::Error(kErrInvalidArgument, "targets contain NaN or Inf values");
    return WrapDataset(info.Env(), std::make_shared<TensorDataset>(inputs, targets));
  });
}

Napi::Value SubsetFn(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    DatasetPtr base = UnwrapDataset(info[0]);
    return WrapDataset(info.Env(), std::make_shared<SubsetDataset>(base, IntArrayArg(info, 1, "indices")));
  });
}

Napi::Value ReferenceSplitFn(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber())
      throw heimdall::Error(kErrInvalidArgument, "referenceSplit(n, seed) takes two integers");
    auto s = reference_split(info[0].As<Napi::Number>().Int64Value(), static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()));
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("train", ShapeToJs(info.Env(), s.train));
    o.Set("val", ShapeToJs(info.Env(), s.val));
    o.Set("test", ShapeToJs(info.Env(), s.test));
    return o;
  });
}

}  // namespace

Napi::Object WrapDataset(Napi::Env env, DatasetPtr dataset) {
  Napi::Object obj = DatasetWrap::constructor->New({});
  DatasetWrap::Unwrap(obj)->dataset_ = std::move(dataset);
  return obj;
}

DatasetPtr UnwrapDataset(const Napi::Value& value, const char* what) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !DatasetWrap::constructor ||
      !value.As<Napi::Object>().InstanceOf(DatasetWrap::constructor->Value()))
    throw MakeError(env, {kErrInvalidArgument, std::string(what) + " must be a native data set created by heimdall-torch"});
  auto* w = DatasetWrap::Unwrap(value.As<Napi::Object>());
  if (!w->dataset_) throw MakeError(env, {kErrInvalidArgument, std::string(what) + " is an empty NativeDataset"});
  return w->dataset_;
}

void InitDataset(Napi::Env env, Napi::Object exports) {
  DatasetWrap::Init(env, exports);
  exports.Set("tensorDataset", Napi::Function::New(env, TensorDatasetFn, "tensorDataset"));
  exports.Set("subset", Napi::Function::New(env, SubsetFn, "subset"));
  exports.Set("referenceSplit", Napi::Function::New(env, ReferenceSplitFn, "referenceSplit"));
}

}  // namespace heimdall::napi
