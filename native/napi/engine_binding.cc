// class Engine: trains a Model one epoch per call off the JavaScript thread — always on the engine's own
// SerialThread (see serial_thread.h) — while batch events stream to a JS callback.
#include <atomic>
#include <functional>

#include <ATen/ATen.h>

#include "errors.h"
#include "napi/handles.h"
#include "napi/serial_thread.h"
#include "train/engine.h"

namespace heimdall::napi {
namespace {

struct EngineState {
  ModelPtr model;
  std::unique_ptr<Engine> engine;
  std::atomic<bool> stop{false};
  std::atomic<bool> busy{false};
  SerialThread thread;  // every operation of this engine runs here

  // Runs `fn` on the engine's thread, holding the model's mutex; returns when it is done, rethrows its error.
  void Run(const std::function<void()>& fn) {
    thread.Run([&] {
      std::lock_guard<std::mutex> lock(model->mutex);
      fn();
    });
  }
};
using StatePtr = std::shared_ptr<EngineState>;

// Marks the engine busy for one operation; a second concurrent operation is refused.
class BusyScope {
 public:
  explicit BusyScope(StatePtr s) : s_(std::move(s)) {}
  ~BusyScope() { if (s_) s_->busy = false; }
  static void Acquire(EngineState& s) {
    bool expected = false;
    if (!s.busy.compare_exchange_strong(expected, true))
      throw heimdall::Error(kErrState, "this engine is already running an operation; await it before starting another");
  }

 private:
  StatePtr s_;
};

Napi::Object MetricsToJs(Napi::Env env, const std::map<std::string, double>& m) {
  Napi::Object o = Napi::Object::New(env);
  for (const auto& [k, v] : m) o.Set(k, Napi::Number::New(env, v));
  return o;
}

Napi::Object EpochToJs(Napi::Env env, const EpochResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("epoch", Napi::Number::New(env, static_cast<double>(r.epoch)));
  o.Set("batches", Napi::Number::New(env, static_cast<double>(r.batches)));
  o.Set("samples", Napi::Number::New(env, static_cast<double>(r.samples)));
  o.Set("step", Napi::Number::New(env, static_cast<double>(r.step)));
  o.Set("seconds", Napi::Number::New(env, r.seconds));
  o.Set("samplesPerSec", Napi::Number::New(env, r.samples_per_sec));
  o.Set("stopped", Napi::Boolean::New(env, r.stopped));
  o.Set("maxStepsReached", Napi::Boolean::New(env, r.max_steps_reached));
  o.Set("paused", Napi::Boolean::New(env, r.paused));
  o.Set("syncSeconds", Napi::Number::New(env, r.sync_seconds));
  o.Set("metrics", MetricsToJs(env, r.metrics));
  return o;
}

class EpochWorker : public Napi::AsyncProgressQueueWorker<BatchEvent> {
 public:
  EpochWorker(Napi::Env env, StatePtr state, DatasetPtr data, int64_t batch_size, int64_t max_epochs, TrainLimits limits,
              Napi::Value on_batch)
      : Napi::AsyncProgressQueueWorker<BatchEvent>(env, "heimdall.trainEpoch"),
        deferred_(Napi::Promise::Deferred::New(env)),
        state_(std::move(state)),
        data_(std::move(data)),
        batch_size_(batch_size),
        max_epochs_(max_epochs),
        limits_(limits) {
    if (on_batch.IsFunction()) on_batch_ = Napi::Persistent(on_batch.As<Napi::Function>());
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute(const ExecutionProgress& progress) override {
    BusyScope busy(state_);
    try {
      state_->Run([&] {
        result_ = state_->engine->train_epoch(
            data_, batch_size_, max_epochs_, [&](const BatchEvent& ev) { progress.Send(&ev, 1); }, state_->stop, limits_);
      });
    } catch (...) {
      error_ = CaptureCurrentException();
      SetError(error_.message);
    }
  }

  void OnProgress(const BatchEvent* events, size_t count) override {
    if (on_batch_.IsEmpty() || hook_error_) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    for (size_t i = 0; i < count; ++i) {
      const BatchEvent& e = events[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("epoch", Napi::Number::New(env, static_cast<double>(e.epoch)));
      o.Set("batch", Napi::Number::New(env, static_cast<double>(e.batch)));
      o.Set("step", Napi::Number::New(env, static_cast<double>(e.step)));
      o.Set("batchSize", Napi::Number::New(env, static_cast<double>(e.batch_size)));
      o.Set("lr", Napi::Number::New(env, e.lr));
      o.Set("samplesPerSec", Napi::Number::New(env, e.samples_per_sec));
      o.Set("time", Napi::Number::New(env, e.time));
      o.Set("metrics", MetricsToJs(env, e.metrics));
      try {
        on_batch_.Call({o});
      } catch (const Napi::Error& err) {
        // A throwing callback stops the epoch at the next batch and rejects with its error.
        hook_error_ = std::make_unique<Napi::ObjectReference>(Napi::Persistent(err.Value()));
        state_->stop = true;
        return;
      }
    }
  }

  void OnOK() override {
    if (hook_error_) {
      deferred_.Reject(hook_error_->Value());
      return;
    }
    deferred_.Resolve(EpochToJs(Env(), result_));
  }
  void OnError(const Napi::Error&) override {
    if (hook_error_) {
      deferred_.Reject(hook_error_->Value());
      return;
    }
    deferred_.Reject(MakeError(Env(), error_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  StatePtr state_;
  DatasetPtr data_;
  int64_t batch_size_, max_epochs_;
  TrainLimits limits_;
  Napi::FunctionReference on_batch_;
  std::unique_ptr<Napi::ObjectReference> hook_error_;
  EpochResult result_;
  ErrorInfo error_;
};

// The engine's options arrive complete: lib/native.ts fills them from lib/config.ts' engineOptionsSchema, the
// one place that declares their defaults. A missing field is a bug in the caller, named here — never a
// silent default of the binding's own.
class Options {
 public:
  Options(Napi::Object o, std::string path) : o_(std::move(o)), path_(std::move(path)) {}
  double Number(const char* key) const { return GetNumber(o_, Need(key), 0.0); }
  int64_t Int(const char* key) const { return GetInt(o_, Need(key), 0); }
  bool Bool(const char* key) const { return GetBool(o_, Need(key), false); }
  std::string String(const char* key) const { return GetString(o_, Need(key), ""); }
  Options Object(const char* key) const {
    Napi::Value v = o_.Get(Need(key));
    if (!v.IsObject()) throw heimdall::Error(kErrInvalidArgument, "engine option " + path_ + key + " must be an object");
    return Options(v.As<Napi::Object>(), path_ + key + ".");
  }

 private:
  const char* Need(const char* key) const {
    Napi::Value v = o_.Get(key);
    if (v.IsUndefined() || v.IsNull())
      throw heimdall::Error(kErrInvalidArgument, "engine option " + path_ + key +
                                                     " is missing: create engines through lib/native.ts, which completes them");
    return key;
  }
  Napi::Object o_;
  std::string path_;
};

EngineOptions ParseEngineOptions(const Napi::Object& object) {
  const Options o(object, "");
  EngineOptions e;
  e.device = o.String("device");
  e.loss = o.String("loss");
  e.label_smoothing = o.Number("labelSmoothing");
  e.grad_clip_norm = o.Number("gradClipNorm");
  e.accumulate = o.Int("accumulate");
  e.precision = o.String("precision");
  e.channels_last = o.Bool("channelsLast");
  e.deterministic = o.String("deterministic");
  e.sync_batchnorm = o.Bool("syncBatchNorm");
  e.ema_decay = o.Number("emaDecay");
  e.swa = o.Bool("swa");
  e.ema_every = o.Int("emaEvery");
  e.ema_start = o.Int("emaStart");
  if (e.ema_decay < 0 || e.ema_decay >= 1) throw heimdall::Error(kErrInvalidArgument, "emaDecay must be in [0, 1) (0: off)");
  if (e.ema_every < 1 || e.ema_start < 1) throw heimdall::Error(kErrInvalidArgument, "emaEvery and emaStart must be ≥ 1");
  e.benchmark = o.String("benchmark");
  e.seed = static_cast<uint64_t>(o.Int("seed"));
  e.threads = static_cast<int>(o.Int("threads"));
  const Options p = o.Object("optimizer");
  e.optimizer.name = p.String("name");
  e.optimizer.lr = p.Number("lr");
  e.optimizer.weight_decay = p.Number("weightDecay");
  e.optimizer.beta1 = p.Number("beta1");
  e.optimizer.beta2 = p.Number("beta2");
  e.optimizer.eps = p.Number("eps");
  e.optimizer.momentum = p.Number("momentum");
  e.optimizer.dampening = p.Number("dampening");
  e.optimizer.nesterov = p.Bool("nesterov");
  const Options s = o.Object("schedule");
  e.schedule.name = s.String("name");
  e.schedule.warmup_steps = s.Int("warmupSteps");
  e.schedule.total_steps = s.Int("totalSteps");
  e.schedule.min_lr = s.Number("minLr");
  if (e.schedule.name != "cosine" && e.schedule.name != "constant" && e.schedule.name != "exponential")
    throw heimdall::Error(kErrInvalidArgument, "unknown schedule \"" + e.schedule.name + "\"; valid: cosine, constant, exponential");
  if (e.schedule.name == "exponential" && !(e.schedule.min_lr > 0))
    throw heimdall::Error(kErrInvalidArgument, "the exponential schedule sweeps from minLr to lr: minLr must be > 0");
  Napi::Value ps = object.Get("positionScale");
  if (ps.IsObject()) {  // optional: only localization data has one
    const Options scale(ps.As<Napi::Object>(), "positionScale.");
    e.position_scale.enabled = true;
    e.position_scale.lat_center = scale.Number("latCenter");
    e.position_scale.lon_center = scale.Number("lonCenter");
    e.position_scale.lat_scale = scale.Number("latScale");
    e.position_scale.lon_scale = scale.Number("lonScale");
  }
  return e;
}

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(env, "Engine",
                                     {
                                         InstanceAccessor<&EngineWrap::Epoch>("epoch"),
                                         InstanceAccessor<&EngineWrap::Step>("step"),
                                         InstanceAccessor<&EngineWrap::BatchInEpoch>("batchInEpoch"),
                                         InstanceAccessor<&EngineWrap::Lr>("lr"),
                                         InstanceAccessor<&EngineWrap::Device>("device"),
                                         InstanceMethod<&EngineWrap::TrainEpoch>("trainEpoch"),
                                         InstanceMethod<&EngineWrap::Evaluate>("evaluate"),
                                         InstanceMethod<&EngineWrap::Predict>("predict"),
                                         InstanceMethod<&EngineWrap::RequestStop>("requestStop"),
                                         InstanceMethod<&EngineWrap::ClearStop>("clearStop"),
                                         InstanceMethod<&EngineWrap::SaveCheckpoint>("saveCheckpoint"),
                                         InstanceMethod<&EngineWrap::LoadCheckpoint>("loadCheckpoint"),
                                         InstanceMethod<&EngineWrap::SetProcessGroup>("setProcessGroup"),
                                         InstanceMethod<&EngineWrap::ApplyAverage>("applyAverage"),
                                         InstanceMethod<&EngineWrap::UpdateSwa>("updateSwa"),
                                         InstanceMethod<&EngineWrap::SetLrOverride>("setLrOverride"),
                                         InstanceMethod<&EngineWrap::Recalibrate>("recalibrate"),
                                         InstanceMethod<&EngineWrap::SetAccumulate>("setAccumulate"),
                                         InstanceMethod<&EngineWrap::SetBackboneTrainable>("setBackboneTrainable"),
                                         InstanceAccessor<&EngineWrap::Accumulate>("accumulate"),
                                         InstanceAccessor<&EngineWrap::EmaUpdates>("emaUpdates"),
                                     });
    exports.Set("Engine", cls);
  }

  explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    Guard(info.Env(), [&]() -> Napi::Value {
      state_ = std::make_shared<EngineState>();
      state_->model = UnwrapModel(info[0]);
      EngineOptions options = ParseEngineOptions(OptionsArg(info, 1));
      std::unique_lock<std::mutex> lock(state_->model->mutex, std::try_to_lock);
      if (!lock.owns_lock())
        throw heimdall::Error(kErrState, "the model is busy (a training or save is running); create the engine after it");
      state_->engine = std::make_unique<Engine>(state_->model->net, options);
      return info.Env().Undefined();
    });
  }

 private:
  Napi::Value Epoch(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(state_->engine->epoch()));
  }
  Napi::Value Step(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(state_->engine->step()));
  }
  Napi::Value BatchInEpoch(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(state_->engine->batch_in_epoch()));
  }
  Napi::Value Lr(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), state_->engine->current_lr()); }
  Napi::Value Device(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), state_->engine->device().str());
  }

  // trainEpoch(dataset, {batchSize, maxEpochs, maxBatches?, maxSteps?, pauseAfter?}, onBatch?) → Promise<EpochResult>
  Napi::Value TrainEpoch(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      DatasetPtr data = UnwrapDataset(info[0]);
      Napi::Object o = OptionsArg(info, 1);
      const int64_t batch_size = GetInt(o, "batchSize", 32);
      const int64_t max_epochs = GetInt(o, "maxEpochs", 1);
      TrainLimits limits;
      limits.max_batches = GetInt(o, "maxBatches", -1);
      limits.max_steps = GetInt(o, "maxSteps", -1);
      limits.pause_after = GetInt(o, "pauseAfter", -1);
      if (o.Has("shuffle")) {
        if (!o.Get("shuffle").IsBoolean()) throw heimdall::Error(kErrInvalidArgument, "trainEpoch: shuffle must be a boolean");
        limits.shuffle = o.Get("shuffle").As<Napi::Boolean>().Value();
      }
      if (limits.max_batches == 0) throw heimdall::Error(kErrInvalidArgument, "trainEpoch: maxBatches must be ≥ 1 (or absent for the whole epoch)");
      if (limits.pause_after == 0) throw heimdall::Error(kErrInvalidArgument, "trainEpoch: pauseAfter must be ≥ 1 (or absent)");
      BusyScope::Acquire(*state_);
      auto* worker = new EpochWorker(info.Env(), state_, data, batch_size, max_epochs, limits,
                                     info.Length() > 2 ? info[2] : info.Env().Undefined());
      Napi::Promise p = worker->Promise();
      worker->Queue();
      return p;
    });
  }

  Napi::Value Evaluate(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      DatasetPtr data = UnwrapDataset(info[0]);
      Napi::Object o = OptionsArg(info, 1);
      const int64_t batch_size = GetInt(o, "batchSize", 32);
      const int64_t max_batches = GetInt(o, "maxBatches", -1);
      BusyScope::Acquire(*state_);
      auto s = state_;
      auto result = std::make_shared<EpochResult>();
      return Task::Run(
          info.Env(),
          [s, data, batch_size, max_batches, result] {
            BusyScope busy(s);
            s->Run([&] { *result = s->engine->evaluate(data, batch_size, &s->stop, max_batches); });
          },
          [result](Napi::Env env) -> Napi::Value { return EpochToJs(env, *result); }, "heimdall.evaluate");
    });
  }

  // predict(datasetOrTypedArray, {batchSize, shape}) → Promise<{[output]: {data: Float32Array, shape}}>
  Napi::Value Predict(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      Napi::Object o = OptionsArg(info, 1);
      const int64_t batch_size = GetInt(o, "batchSize", 32);
      DatasetPtr data;
      at::Tensor inputs;
      if (info.Length() > 0 && info[0].IsTypedArray()) {
        auto shape = GetIntArray(o, "shape", {});
        if (shape.size() != 4) throw heimdall::Error(kErrShape, "predict on a typed array needs options.shape = [batch, C, H, W]");
        inputs = TensorFromTypedArray(info[0], shape, "inputs");
      } else {
        data = UnwrapDataset(info[0]);
      }
      BusyScope::Acquire(*state_);
      auto s = state_;
      auto outputs = std::make_shared<std::vector<at::Tensor>>();
      auto names = s->model->net->output_names();
      return Task::Run(
          info.Env(),
          [s, data, inputs, batch_size, outputs] {
            BusyScope busy(s);
            s->Run([&] { *outputs = data ? s->engine->predict(data, batch_size) : s->engine->predict(inputs, batch_size); });
          },
          [outputs, names](Napi::Env env) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            for (size_t i = 0; i < outputs->size() && i < names.size(); ++i) {
              Napi::Object entry = Napi::Object::New(env);
              entry.Set("data", TypedArrayFromTensor(env, (*outputs)[i]));
              const auto sizes = (*outputs)[i].sizes();
              Napi::Array shape = Napi::Array::New(env, sizes.size());
              for (size_t k = 0; k < sizes.size(); ++k) shape.Set(static_cast<uint32_t>(k), Napi::Number::New(env, static_cast<double>(sizes[k])));
              entry.Set("shape", shape);
              o.Set(names[i], entry);
            }
            return o;
          },
          "heimdall.predict");
    });
  }

  Napi::Value RequestStop(const Napi::CallbackInfo& info) {
    state_->stop = true;
    return info.Env().Undefined();
  }
  Napi::Value ClearStop(const Napi::CallbackInfo& info) {
    state_->stop = false;
    return info.Env().Undefined();
  }

  // Runs fn(engine) on a worker thread, the engine marked busy meanwhile; resolves with undefined.
  Napi::Value RunOnEngine(Napi::Env env, const char* name, std::function<void(Engine&)> fn) {
    BusyScope::Acquire(*state_);
    auto s = state_;
    return Task::Run(
        env,
        [s, fn = std::move(fn)] {
          BusyScope busy(s);
          s->Run([&] { fn(*s->engine); });
        },
        nullptr, name);
  }

  Napi::Value SaveCheckpoint(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      std::string path = StringArg(info, 0, "path");
      std::string user = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "{}";
      return RunOnEngine(info.Env(), "heimdall.saveCheckpoint", [path, user](Engine& e) { e.save_checkpoint(path, user); });
    });
  }

  Napi::Value LoadCheckpoint(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      std::string path = StringArg(info, 0, "path");
      BusyScope::Acquire(*state_);
      auto s = state_;
      auto user = std::make_shared<std::string>();
      return Task::Run(
          info.Env(),
          [s, path, user] {
            BusyScope busy(s);
            s->Run([&] { *user = s->engine->load_checkpoint(path); });
          },
          [user](Napi::Env env) -> Napi::Value { return Napi::String::New(env, *user); }, "heimdall.loadCheckpoint");
    });
  }

  // applyAverage() → Promise<void>: the weights become the EMA average (end of fit).
  Napi::Value ApplyAverage(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      return RunOnEngine(info.Env(), "heimdall.applyAverage", [](Engine& e) { e.apply_average(); });
    });
  }
  // setAccumulate(n) → Promise<void>: batches per optimizer step from the next batch on (between epochs).
  Napi::Value SetAccumulate(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsNumber()) throw heimdall::Error(kErrInvalidArgument, "setAccumulate(n): n must be a number ≥ 1");
      const double v = info[0].As<Napi::Number>().DoubleValue();
      if (!(v >= 1) || v != static_cast<double>(static_cast<int64_t>(v)))
        throw heimdall::Error(kErrInvalidArgument, "setAccumulate(n): n must be an integer ≥ 1");
      const int64_t n = static_cast<int64_t>(v);
      return RunOnEngine(info.Env(), "heimdall.setAccumulate", [n](Engine& e) { e.set_accumulate(n); });
    });
  }
  // setBackboneTrainable(trainable, lrScale) → Promise<void> (BackboneFinetuning, between epochs).
  Napi::Value SetBackboneTrainable(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 2 || !info[0].IsBoolean() || !info[1].IsNumber())
        throw heimdall::Error(kErrInvalidArgument, "setBackboneTrainable(trainable: boolean, lrScale: number)");
      const bool trainable = info[0].As<Napi::Boolean>().Value();
      const double scale = info[1].As<Napi::Number>().DoubleValue();
      return RunOnEngine(info.Env(), "heimdall.setBackboneTrainable", [trainable, scale](Engine& e) { e.set_backbone_trainable(trainable, scale); });
    });
  }
  Napi::Value Accumulate(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(state_->engine->accumulate()));
  }
  Napi::Value UpdateSwa(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      return RunOnEngine(info.Env(), "heimdall.updateSwa", [](Engine& e) { e.update_swa(); });
    });
  }
  // setLrOverride(lr) → Promise<void>: the rate instead of the schedule's (≤ 0: the schedule's again).
  Napi::Value SetLrOverride(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsNumber()) throw heimdall::Error(kErrInvalidArgument, "setLrOverride(lr): lr must be a number");
      const double lr = info[0].As<Napi::Number>().DoubleValue();
      return RunOnEngine(info.Env(), "heimdall.setLrOverride", [lr](Engine& e) { e.set_lr_override(lr); });
    });
  }
  // recalibrate(dataset, { batchSize }) → Promise<void>: the heads' BatchNorm statistics from the current weights.
  Napi::Value Recalibrate(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      DatasetPtr data = UnwrapDataset(info[0]);
      Napi::Object o = OptionsArg(info, 1);
      const int64_t batch_size = GetInt(o, "batchSize", 32);
      return RunOnEngine(info.Env(), "heimdall.recalibrate", [data, batch_size](Engine& e) { e.recalibrate(data, batch_size); });
    });
  }
  Napi::Value EmaUpdates(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(state_->engine->ema_updates()));
  }

  // setProcessGroup(group | null) → Promise<void>: collective (rank 0's weights are broadcast).
  Napi::Value SetProcessGroup(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&]() -> Napi::Value {
      GroupPtr group = info.Length() > 0 && !info[0].IsNull() && !info[0].IsUndefined() ? UnwrapGroup(info[0]) : nullptr;
      return RunOnEngine(info.Env(), "heimdall.setProcessGroup", [group](Engine& e) { e.set_group(group); });
    });
  }

  StatePtr state_;
};

}  // namespace

void InitEngine(Napi::Env env, Napi::Object exports) { EngineWrap::Init(env, exports); }

}  // namespace heimdall::napi
