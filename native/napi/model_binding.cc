// class Model: a network (a backbone of a registered family, model/registry.h) with a head, shared with engines and exporters through ModelHandle.
#include <torch/torch.h>

#include "common/threads.h"
#include "errors.h"
#include "model/registry.h"
#include "napi/handles.h"

namespace heimdall::napi {
namespace {

std::mutex g_rng_mutex;  // model construction seeds the global generator

Napi::Object ReportToJs(Napi::Env env, const WeightsReport& r) {
  auto list = [&](const std::vector<std::string>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), v[i]);
    return a;
  };
  Napi::Object o = Napi::Object::New(env);
  o.Set("loaded", list(r.loaded));
  o.Set("missing", list(r.missing));
  o.Set("unexpected", list(r.unexpected));
  o.Set("mismatched", list(r.mismatched));
  return o;
}

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::FunctionReference* constructor;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(
        env, "Model",
        {
            InstanceAccessor<&ModelWrap::Family>("family"),
            InstanceAccessor<&ModelWrap::Variant>("variant"),
            InstanceAccessor<&ModelWrap::Head>("head"),
            InstanceAccessor<&ModelWrap::InChans>("inChans"),
            InstanceAccessor<&ModelWrap::NumFeatures>("numFeatures"),
            InstanceAccessor<&ModelWrap::OutputNames>("outputNames"),
            InstanceMethod<&ModelWrap::StateDictShapes>("stateDictShapes"),
            InstanceMethod<&ModelWrap::NumParameters>("numParameters"),
            InstanceMethod<&ModelWrap::LoadWeights>("loadWeights"),
            InstanceMethod<&ModelWrap::SaveWeights>("saveWeights"),
            InstanceMethod<&ModelWrap::SetBackboneFrozen>("setBackboneFrozen"),
            StaticMethod<&ModelWrap::Create>("create"),
        });
    constructor = new Napi::FunctionReference(Napi::Persistent(cls));
    exports.Set("Model", cls);
  }

  // new Model(options): builds the network on the JavaScript thread. Model.create(options) builds it on a
  // worker thread and constructs the JS object with the finished handle (adopting_).
  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    Guard(info.Env(), [&]() -> Napi::Value {
      if (adopting_) {
        handle_ = std::move(*adopting_);
        adopting_ = nullptr;
      } else {
        int64_t seed = 42;
        NetworkOptions opts = ParseOptions(OptionsArg(info, 0), &seed);
        handle_ = Build(opts, seed);
      }
      for (const auto& [k, t] : handle_->net->state_dict()) shapes_.emplace_back(k, t.sizes().vec());
      return info.Env().Undefined();
    });
  }

  // Model.create(options) → Promise<Model>: the weights are initialised off the JavaScript thread
  // (convnext_large: seconds).
  static Napi::Value Create(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      int64_t seed = 42;
      NetworkOptions opts = ParseOptions(OptionsArg(info, 0), &seed);
      auto built = std::make_shared<ModelPtr>();
      return Task::Run(
          info.Env(), [opts, seed, built] { *built = Build(opts, seed); },
          [built](Napi::Env) -> Napi::Value {
            struct Reset {
              ~Reset() { adopting_ = nullptr; }
            } reset;
            adopting_ = built.get();
            return constructor->New({});
          },
          "heimdall.createModel");
    });
  }

  static NetworkOptions ParseOptions(const Napi::Object& o, int64_t* seed) {
    const Napi::Env env = o.Env();
    NetworkOptions opts;
    opts.backbone.variant = GetString(o, "variant", "convnext_atto");
    opts.backbone.in_chans = GetInt(o, "inChans", 3);
    opts.backbone.drop_path_rate = GetNumber(o, "dropPathRate", 0.0);
    opts.backbone.ls_init_value = GetNumber(o, "layerScaleInit", 1e-6);
    opts.head.kind = parse_head_kind(GetString(o, "head", "localization"));
    opts.head.outputs = GetInt(o, "outputs", opts.head.kind == HeadKind::Localization ? 2 : 1);
    opts.head.sigma_min = GetNumber(o, "sigmaMin", 0.01);
    opts.head.sigma_max = GetNumber(o, "sigmaMax", 1.0);
    opts.freeze_backbone = GetBool(o, "freezeBackbone", false);
    // headDropout: one rate for every hidden layer of the localization MLPs, or one per layer.
    if (Napi::Value d = o.Get("headDropout"); !d.IsUndefined() && !d.IsNull()) {
      const char* what = "option headDropout must be a number in [0, 1) or an array of them (one per hidden layer)";
      auto bad = [](const Napi::Env& env, const std::string& msg) { throw MakeError(env, {kErrInvalidArgument, msg}); };
      std::vector<double> rates;
      if (d.IsNumber()) {
        rates.assign(opts.head.hidden.size(), d.As<Napi::Number>().DoubleValue());
      } else if (d.IsArray()) {
        Napi::Array a = d.As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); ++i) {
          if (!a.Get(i).IsNumber()) bad(env, what);
          rates.push_back(a.Get(i).As<Napi::Number>().DoubleValue());
        }
        if (rates.size() != opts.head.hidden.size())
          bad(env, std::string(what) + "; got " + std::to_string(rates.size()) + " rates for " +
                       std::to_string(opts.head.hidden.size()) + " hidden layers");
      } else {
        bad(env, what);
      }
      for (double r : rates)
        if (!(r >= 0.0 && r < 1.0)) bad(env, std::string(what) + "; got " + std::to_string(r));
      opts.head.dropout = rates;
    }
    *seed = GetInt(o, "seed", 42);
    return opts;
  }

  // On a fresh thread with all intra-op threads (common/threads.h): the caller — the JavaScript thread or a libuv
  // pool thread — runs its own ATen ops single-threaded, and weight initialisation of the large variants takes
  // seconds. The thread's OpenMP team ends with it.
  static ModelPtr Build(const NetworkOptions& opts, int64_t seed) {
    ModelPtr built;
    heimdall::run_on_fresh_thread([&] {
      std::lock_guard<std::mutex> lock(g_rng_mutex);
      torch::manual_seed(static_cast<uint64_t>(seed));
      built = std::make_shared<ModelHandle>(Network(opts));
    });
    return built;
  }

  ModelPtr handle() const { return handle_; }

 private:
  const NetworkOptions& opts() const { return handle_->net->options(); }
  Napi::Value Family(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), handle_->net->family()); }
  Napi::Value Variant(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), opts().backbone.variant); }
  Napi::Value Head(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), head_kind_name(opts().head.kind)); }
  Napi::Value InChans(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(opts().backbone.in_chans));
  }
  Napi::Value NumFeatures(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(handle_->net->backbone()->num_features()));
  }
  Napi::Value OutputNames(const Napi::CallbackInfo& info) {
    auto names = handle_->net->output_names();
    Napi::Array a = Napi::Array::New(info.Env(), names.size());
    for (size_t i = 0; i < names.size(); ++i) a.Set(static_cast<uint32_t>(i), names[i]);
    return a;
  }
  // {name: shape} in state_dict order (parameters, then buffers), timm's names.
  Napi::Value StateDictShapes(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    for (const auto& [k, s] : shapes_) {
      Napi::Array a = Napi::Array::New(info.Env(), s.size());
      for (size_t i = 0; i < s.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), static_cast<double>(s[i])));
      o.Set(k, a);
    }
    return o;
  }
  Napi::Value NumParameters(const Napi::CallbackInfo& info) {
    const bool trainable_only = info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
    std::lock_guard<std::mutex> lock(handle_->mutex);
    double n = 0;
    for (const auto& p : handle_->net->parameters())
      if (!trainable_only || p.requires_grad()) n += static_cast<double>(p.numel());
    return Napi::Number::New(info.Env(), n);
  }
  Napi::Value LoadWeights(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      std::string path = StringArg(info, 0, "path");
      const bool strict = GetBool(OptionsArg(info, 1), "strict", false);
      auto h = handle_;
      auto report = std::make_shared<WeightsReport>();
      return Task::Run(
          info.Env(),
          [h, path, strict, report] {
            TensorFile file = load_safetensors(path);
            NamedTensors weights;  // a training checkpoint also holds optimizer/RNG state: take the weights
            for (auto& [k, t] : file.tensors)
              if (heimdall::is_weight_key(k))
                weights.emplace_back(k, t);
            std::lock_guard<std::mutex> lock(h->mutex);
            try {
              *report = h->net->load_state_dict(weights, strict);
            } catch (const heimdall::Error& e) {
              throw heimdall::Error(e.code(), path + ": " + e.what());
            }
          },
          [report](Napi::Env env) -> Napi::Value { return ReportToJs(env, *report); }, "heimdall.loadWeights");
    });
  }
  Napi::Value SaveWeights(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      std::string path = StringArg(info, 0, "path");
      auto h = handle_;
      return Task::Run(
          info.Env(),
          [h, path] {
            std::lock_guard<std::mutex> lock(h->mutex);
            save_safetensors(path, h->net->state_dict(), network_metadata(h->net->options()));
          },
          nullptr, "heimdall.saveWeights");
    });
  }
  Napi::Value SetBackboneFrozen(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsBoolean()) throw heimdall::Error(kErrInvalidArgument, "frozen must be a boolean");
      std::unique_lock<std::mutex> lock(handle_->mutex, std::try_to_lock);
      if (!lock.owns_lock()) throw heimdall::Error(kErrState, "the model is busy (a training or save is running); try again after it");
      handle_->net->set_backbone_frozen(info[0].As<Napi::Boolean>().Value());
      return info.Env().Undefined();
    });
  }

  ModelPtr handle_;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes_;
  static ModelPtr* adopting_;  // set on the JS thread only, for the duration of one constructor->New
};

Napi::FunctionReference* ModelWrap::constructor = nullptr;
ModelPtr* ModelWrap::adopting_ = nullptr;

}  // namespace

ModelPtr UnwrapModel(const Napi::Value& value, const char* what) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !ModelWrap::constructor ||
      !value.As<Napi::Object>().InstanceOf(ModelWrap::constructor->Value()))
    throw MakeError(env, {kErrInvalidArgument, std::string(what) + " must be a Model created by heimdall-torch"});
  return ModelWrap::Unwrap(value.As<Napi::Object>())->handle();
}

void InitModel(Napi::Env env, Napi::Object exports) {
  ModelWrap::Init(env, exports);
  // The registry's variants: {name, family, depths, dims}, families in registration order.
  const auto all = model_variants();
  Napi::Array variants = Napi::Array::New(env, all.size());
  auto numbers = [&](const std::vector<int64_t>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t k = 0; k < v.size(); ++k) a.Set(static_cast<uint32_t>(k), Napi::Number::New(env, static_cast<double>(v[k])));
    return a;
  };
  for (size_t i = 0; i < all.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", all[i].name);
    o.Set("family", all[i].family);
    o.Set("depths", numbers(all[i].depths));
    o.Set("dims", numbers(all[i].dims));
    variants.Set(static_cast<uint32_t>(i), o);
  }
  exports.Set("variants", variants);
}

}  // namespace heimdall::napi
