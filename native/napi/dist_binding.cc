// Process groups as JS objects: createProcessGroup(options) → Promise<ProcessGroup> (the rendezvous runs off
// the JavaScript thread), the store's small strings (rank 0's run id), and a few collectives the Trainer needs
// between epochs (agreeing on EarlyStopping's decision). Engines take one through engine.setProcessGroup().
#include "dist/group.h"
#include "errors.h"
#include "napi/handles.h"

namespace heimdall::napi {
namespace {

class GroupWrap : public Napi::ObjectWrap<GroupWrap> {
 public:
  static Napi::FunctionReference* constructor;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(env, "ProcessGroup",
                                     {
                                         InstanceAccessor<&GroupWrap::Rank>("rank"),
                                         InstanceAccessor<&GroupWrap::WorldSize>("worldSize"),
                                         InstanceAccessor<&GroupWrap::Backend>("backend"),
                                         InstanceMethod<&GroupWrap::Set>("set"),
                                         InstanceMethod<&GroupWrap::Get>("get"),
                                         InstanceMethod<&GroupWrap::AllreduceSum>("allreduceSum"),
                                         InstanceMethod<&GroupWrap::Barrier>("barrier"),
                                     });
    constructor = new Napi::FunctionReference(Napi::Persistent(cls));
    exports.Set("ProcessGroup", cls);
  }

  // Not constructible from JS directly: createProcessGroup() fills `group_`.
  explicit GroupWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GroupWrap>(info) {}

  GroupPtr group_;

 private:
  GroupPtr need(Napi::Env env) const {
    if (!group_) throw MakeError(env, {kErrInvalidArgument, "ProcessGroup objects come from createProcessGroup()"});
    return group_;
  }
  Napi::Value Rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), need(info.Env())->rank()); }
  Napi::Value WorldSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), need(info.Env())->size()); }
  Napi::Value Backend(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), need(info.Env())->backend()); }

  // set(key, value) → Promise<void>
  Napi::Value Set(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      auto g = need(info.Env());
      std::string key = StringArg(info, 0, "key"), value = StringArg(info, 1, "value");
      return Task::Run(info.Env(), [g, key, value] { g->store_set(key, value); }, nullptr, "heimdall.storeSet");
    });
  }

  // get(key, timeoutMs) → Promise<string>: waits for the key.
  Napi::Value Get(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      auto g = need(info.Env());
      std::string key = StringArg(info, 0, "key");
      const int64_t timeout = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 60000;
      if (timeout < 1) throw heimdall::Error(kErrInvalidArgument, "get(key, timeoutMs): timeoutMs must be ≥ 1");
      auto out = std::make_shared<std::string>();
      return Task::Run(
          info.Env(), [g, key, timeout, out] { *out = g->store_get(key, timeout); },
          [out](Napi::Env env) -> Napi::Value { return Napi::String::New(env, *out); }, "heimdall.storeGet");
    });
  }

  // allreduceSum(numbers) → Promise<number[]> (collective)
  Napi::Value AllreduceSum(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      auto g = need(info.Env());
      if (info.Length() < 1 || !info[0].IsArray()) throw heimdall::Error(kErrInvalidArgument, "allreduceSum takes an array of numbers");
      Napi::Array a = info[0].As<Napi::Array>();
      auto values = std::make_shared<std::vector<double>>(a.Length());
      for (uint32_t i = 0; i < a.Length(); ++i) {
        Napi::Value v = a.Get(i);
        if (!v.IsNumber()) throw heimdall::Error(kErrInvalidArgument, "allreduceSum takes an array of numbers");
        (*values)[i] = v.As<Napi::Number>().DoubleValue();
      }
      return Task::Run(
          info.Env(), [g, values] { *values = g->allreduce_sum(*values); },
          [values](Napi::Env env) -> Napi::Value {
            Napi::Array out = Napi::Array::New(env, values->size());
            for (size_t i = 0; i < values->size(); ++i) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, (*values)[i]));
            return out;
          },
          "heimdall.allreduceSum");
    });
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      auto g = need(info.Env());
      return Task::Run(info.Env(), [g] { g->barrier(); }, nullptr, "heimdall.barrier");
    });
  }
};

Napi::FunctionReference* GroupWrap::constructor = nullptr;

// The options arrive complete from lib/native.ts (lib/config.ts' schema holds the defaults).
GroupOptions ParseGroupOptions(const Napi::Object& o) {
  auto need = [&](const char* key) {
    if (o.Get(key).IsUndefined() || o.Get(key).IsNull())
      throw heimdall::Error(kErrInvalidArgument, std::string("process group option ") + key + " is missing: create groups through lib/native.ts");
    return key;
  };
  GroupOptions g;
  g.backend = GetString(o, need("backend"), "");
  g.rank = static_cast<int>(GetInt(o, need("rank"), 0));
  g.world_size = static_cast<int>(GetInt(o, need("worldSize"), 1));
  g.master_addr = GetString(o, need("masterAddr"), "");
  g.master_port = static_cast<int>(GetInt(o, need("masterPort"), 0));
  g.agent_store = GetBool(o, need("agentStore"), false);
  g.init_timeout_ms = GetInt(o, need("initTimeoutMs"), 0);
  g.timeout_ms = GetInt(o, need("timeoutMs"), 0);
  g.restart_count = GetInt(o, need("restartCount"), 0);
  g.local_rank = static_cast<int>(GetInt(o, need("localRank"), 0));
  return g;
}

Napi::Value CreateProcessGroupFn(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    GroupOptions options = ParseGroupOptions(OptionsArg(info, 0));
    auto out = std::make_shared<GroupPtr>();
    return Task::Run(
        info.Env(), [options, out] { *out = Group::create(options); },
        [out](Napi::Env env) -> Napi::Value {
          Napi::Object obj = GroupWrap::constructor->New({});
          GroupWrap::Unwrap(obj)->group_ = *out;
          return obj;
        },
        "heimdall.createProcessGroup");
  });
}

}  // namespace

GroupPtr UnwrapGroup(const Napi::Value& value, const char* what) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !GroupWrap::constructor || !value.As<Napi::Object>().InstanceOf(GroupWrap::constructor->Value()))
    throw MakeError(env, {kErrInvalidArgument, std::string(what) + " must be a ProcessGroup from createProcessGroup()"});
  auto* w = GroupWrap::Unwrap(value.As<Napi::Object>());
  if (!w->group_) throw MakeError(env, {kErrInvalidArgument, std::string(what) + " is an empty ProcessGroup"});
  return w->group_;
}

void InitDist(Napi::Env env, Napi::Object exports) {
  GroupWrap::Init(env, exports);
  exports.Set("createProcessGroup", Napi::Function::New(env, CreateProcessGroupFn, "createProcessGroup"));
}

}  // namespace heimdall::napi
