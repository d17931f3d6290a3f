// The Heimdall data pipeline as JS functions (native/data/heimdall): the synthetic RF data set, the on-disk
// data set, writing the on-disk format, feature extraction of IQ, and the metadata (target normalisation,
// feature constants, receivers) that metrics and ONNX export need. Data sets come back as the engine's
// NativeDataset objects (WrapDataset), so they plug into the native loader without returning to JS per batch.
#include <cstring>

#include <ATen/ATen.h>

#include "data/heimdall/directory.h"
#include "data/heimdall/npy.h"
#include "data/heimdall/synthetic.h"
#include "errors.h"
#include "napi/handles.h"

namespace heimdall::napi {
namespace {

void RangeOption(const Napi::Object& o, const char* key, double& lo, double& hi) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return;
  Napi::Value v = o.Get(key);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 2 || !v.As<Napi::Array>().Get(0u).IsNumber() ||
      !v.As<Napi::Array>().Get(1u).IsNumber())
    throw heimdall::Error(kErrInvalidArgument, std::string(key) + " must be a [min, max] pair of numbers");
  lo = v.As<Napi::Array>().Get(0u).As<Napi::Number>().DoubleValue();
  hi = v.As<Napi::Array>().Get(1u).As<Napi::Number>().DoubleValue();
}

AugmentConfig AugmentOptions(const Napi::Object& o, AugmentConfig a) {
  if (!o.Has("augment") || o.Get("augment").IsUndefined()) return a;
  if (!o.Get("augment").IsObject()) throw heimdall::Error(kErrInvalidArgument, "augment must be an object");
  Napi::Object g = o.Get("augment").As<Napi::Object>();
  a.noise_probability = GetNumber(g, "noiseProbability", a.noise_probability);
  a.noise_std = GetNumber(g, "noiseStd", a.noise_std);
  a.shift_probability = GetNumber(g, "shiftProbability", a.shift_probability);
  a.max_shift = GetInt(g, "maxShift", a.max_shift);
  return a;
}

SyntheticConfig SyntheticOptions(const Napi::Object& o) {
  const std::string preset = GetString(o, "preset", "default");
  if (preset != "default" && preset != "reference")
    throw heimdall::Error(kErrInvalidArgument, "preset must be 'default' or 'reference', got '" + preset + "'");
  SyntheticConfig c = preset == "reference" ? SyntheticConfig::reference_simulator() : SyntheticConfig{};
  c.samples = GetInt(o, "samples", c.samples);
  c.seed = static_cast<uint64_t>(GetInt(o, "seed", static_cast<int64_t>(c.seed)));
  c.margin_deg = GetNumber(o, "marginDeg", c.margin_deg);
  c.inside_fraction = GetNumber(o, "insideFraction", c.inside_fraction);
  c.noise_floor_dbm = GetNumber(o, "noiseFloorDbm", c.noise_floor_dbm);
  c.min_snr_db = GetNumber(o, "minSnrDb", c.min_snr_db);
  c.min_receivers = GetInt(o, "minReceivers", c.min_receivers);
  c.tx_power_dbm = GetNumber(o, "txPowerDbm", c.tx_power_dbm);
  c.wide_fm_probability = GetNumber(o, "wideFmProbability", c.wide_fm_probability);
  RangeOption(o, "shadowingDb", c.shadow_sigma_min_db, c.shadow_sigma_max_db);
  RangeOption(o, "clutterDb", c.clutter_min_db, c.clutter_max_db);
  c.cache = GetBool(o, "cache", c.cache);
  c.augment = AugmentOptions(o, c.augment);
  c.validate();
  return c;
}

Napi::Object InfoToJs(Napi::Env env, const RfDataset& rf) {
  Napi::Object o = Napi::Object::New(env);
  const auto& n = rf.normalization();
  Napi::Object scale = Napi::Object::New(env);
  scale.Set("latCenter", n.lat_center);
  scale.Set("lonCenter", n.lon_center);
  scale.Set("latScale", n.lat_half_range);
  scale.Set("lonScale", n.lon_half_range);
  o.Set("positionScale", scale);
  const MelConfig& m = rf.mel_config();
  Napi::Object f = Napi::Object::New(env);
  f.Set("sampleRate", m.sample_rate);
  f.Set("nFft", static_cast<double>(m.n_fft));
  f.Set("hop", static_cast<double>(m.hop));
  f.Set("nMels", static_cast<double>(m.n_mels));
  f.Set("frames", static_cast<double>(m.frames));
  f.Set("melScale", "htk");
  f.Set("amin", m.amin);
  f.Set("floorDb", m.floor_db);
  f.Set("refDb", m.ref_db);
  f.Set("scaleDb", m.scale_db);
  o.Set("features", f);
  Napi::Array rx = Napi::Array::New(env, rf.receivers().size());
  for (size_t k = 0; k < rf.receivers().size(); ++k) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("name", rf.receivers()[k].name);
    r.Set("lat", rf.receivers()[k].lat);
    r.Set("lon", rf.receivers()[k].lon);
    r.Set("alt", rf.receivers()[k].alt);
    rx.Set(static_cast<uint32_t>(k), r);
  }
  o.Set("receivers", rx);
  o.Set("metadataJson", rf.metadata_json());
  return o;
}

// heimdallSynthetic(options) → NativeDataset
Napi::Value SyntheticFn(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    return WrapDataset(info.Env(), make_synthetic_dataset(SyntheticOptions(OptionsArg(info, 0))));
  });
}

// heimdallDirectory(path, options) → Promise<NativeDataset> (opening checks every file's header)
Napi::Value DirectoryFn(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    const std::string dir = StringArg(info, 0, "path");
    Napi::Object o = OptionsArg(info, 1);
    DirectoryOptions opts;
    opts.cache = GetBool(o, "cache", opts.cache);
    opts.augment = AugmentOptions(o, opts.augment);
    auto result = std::make_shared<std::shared_ptr<NpyDirectoryDataset>>();
    return Task::Run(
        info.Env(), [dir, opts, result]() { *result = open_npy_directory(dir, opts); },
        [result](Napi::Env env) -> Napi::Value { return WrapDataset(env, *result); }, "heimdall-directory");
  });
}

// heimdallMaterialize(dataset) → Promise<void>: generates/reads every sample's features into the cache.
Napi::Value MaterializeFn(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    DatasetPtr d = UnwrapDataset(info[0]);
    if (!as_rf_dataset(*d)) throw heimdall::Error(kErrInvalidArgument, "materialize needs a Heimdall data set, got " + d->describe());
    return Task::Run(
        info.Env(), [d]() { as_rf_dataset(*d)->materialize(); }, [](Napi::Env env) -> Napi::Value { return env.Undefined(); },
        "heimdall-materialize");
  });
}

// heimdallInfo(dataset) → { positionScale, features, receivers, metadataJson } or null for other data sets
Napi::Value InfoFn(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    DatasetPtr d = UnwrapDataset(info[0]);
    const RfDataset* rf = as_rf_dataset(*d);
    if (!rf) return info.Env().Null();
    return InfoToJs(info.Env(), *rf);
  });
}

// heimdallPositions(dataset) → Float64Array [n·2] of (lat, lon) degrees, without computing features; works
// through subsets (splits) of a Heimdall data set.
Napi::Value PositionsFn(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    DatasetPtr d = UnwrapDataset(info[0]);
    std::vector<int64_t> idx(static_cast<size_t>(d->size()));
    for (size_t k = 0; k < idx.size(); ++k) idx[k] = static_cast<int64_t>(k);
    const Dataset* cur = d.get();
    while (auto sub = dynamic_cast<const SubsetDataset*>(cur)) {
      for (auto& i : idx) i = sub->indices()[static_cast<size_t>(i)];
      cur = sub->base().get();
    }
    auto rf = dynamic_cast<const RfDataset*>(cur);
    if (!rf) throw heimdall::Error(kErrInvalidArgument, "positions need a Heimdall data set, got " + d->describe());
    at::Tensor p = rf->positions_deg(idx).contiguous();
    auto out = Napi::Float64Array::New(info.Env(), static_cast<size_t>(p.numel()));
    std::memcpy(out.Data(), p.data_ptr<double>(), static_cast<size_t>(p.numel()) * sizeof(double));
    return out;
  });
}

// writeSynthetic(dir, samples, options) → Promise<{ written }>
Napi::Value WriteSyntheticFn(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    const std::string dir = StringArg(info, 0, "dir");
    if (info.Length() < 2 || !info[1].IsNumber()) throw heimdall::Error(kErrInvalidArgument, "writeSynthetic(dir, samples, options): samples must be a number");
    const int64_t n = info[1].As<Napi::Number>().Int64Value();
    if (n < 0) throw heimdall::Error(kErrInvalidArgument, "writeSynthetic: samples must not be negative");
    SyntheticConfig c = SyntheticOptions(OptionsArg(info, 2));
    c.samples = std::max<int64_t>(n, 1);
    c.cache = false;
    return Task::Run(
        info.Env(), [dir, c, n]() { SyntheticRfDataset(c).write_directory(dir, n); },
        [n](Napi::Env env) -> Napi::Value {
          Napi::Object r = Napi::Object::New(env);
          r.Set("written", static_cast<double>(n));
          return r;
        },
        "heimdall-write-synthetic");
  });
}

// computeFeatures(iq: Float32Array, shape: number[], sampleRate: number, options?: { complex?: boolean })
//   complex (default): iq holds interleaved (re, im) pairs and shape is [..., samples] without the pair axis;
//   otherwise iq is the magnitude itself. → { data: Float32Array, shape: [..., nMels, frames] }
Napi::Value ComputeFeaturesFn(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsNumber())
      throw heimdall::Error(kErrInvalidArgument, "computeFeatures(iq, shape, sampleRate, options?)");
    Napi::Array sa = info[1].As<Napi::Array>();
    std::vector<int64_t> shape;
    for (uint32_t k = 0; k < sa.Length(); ++k) shape.push_back(sa.Get(k).As<Napi::Number>().Int64Value());
    Napi::Object o = OptionsArg(info, 3);
    const bool complex = GetBool(o, "complex", true);
    std::vector<int64_t> ta_shape = shape;
    if (complex) ta_shape.push_back(2);
    at::Tensor x = TensorFromTypedArray(info[0], ta_shape, "iq");
    if (x.scalar_type() != at::kFloat) throw heimdall::Error(kErrInvalidArgument, "iq must be a Float32Array");
    if (complex) x = at::view_as_complex(x);
    MelConfig m;
    m.sample_rate = info[2].As<Napi::Number>().DoubleValue();
    at::Tensor f = MelSpectrogram(m)(x);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("data", TypedArrayFromTensor(info.Env(), f));
    Napi::Array fs = Napi::Array::New(info.Env(), static_cast<size_t>(f.dim()));
    for (int64_t k = 0; k < f.dim(); ++k) fs.Set(static_cast<uint32_t>(k), static_cast<double>(f.size(k)));
    r.Set("shape", fs);
    return r;
  });
}

// readNpy(path) → Promise<{ data: Float32Array, shape, dtype }>: a float32/float64/complex64 .npy file for the
// generic data path (complex values come back as interleaved (re, im) pairs with a trailing 2 in shape).
Napi::Value ReadNpyFn(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    const std::string path = StringArg(info, 0, "path");
    auto result = std::make_shared<std::pair<at::Tensor, std::string>>();
    return Task::Run(
        info.Env(),
        [path, result]() {
          NpyHeader h = read_npy_header(path);
          at::Tensor t = read_npy(path);
          if (t.is_complex()) t = at::view_as_real(t);
          *result = {t.to(at::kFloat).contiguous(), h.descr};
        },
        [result](Napi::Env env) -> Napi::Value {
          const at::Tensor& t = result->first;
          Napi::Object r = Napi::Object::New(env);
          r.Set("data", TypedArrayFromTensor(env, t));
          Napi::Array shape = Napi::Array::New(env, static_cast<size_t>(t.dim()));
          for (int64_t k = 0; k < t.dim(); ++k) shape.Set(static_cast<uint32_t>(k), static_cast<double>(t.size(k)));
          r.Set("shape", shape);
          r.Set("dtype", result->second);
          return r;
        },
        "heimdall-read-npy");
  });
}

}  // namespace

void InitData(Napi::Env env, Napi::Object exports) {
  exports.Set("heimdallSynthetic", Napi::Function::New(env, SyntheticFn, "heimdallSynthetic"));
  exports.Set("heimdallDirectory", Napi::Function::New(env, DirectoryFn, "heimdallDirectory"));
  exports.Set("heimdallMaterialize", Napi::Function::New(env, MaterializeFn, "heimdallMaterialize"));
  exports.Set("heimdallPositions", Napi::Function::New(env, PositionsFn, "heimdallPositions"));
  exports.Set("heimdallInfo", Napi::Function::New(env, InfoFn, "heimdallInfo"));
  exports.Set("writeSynthetic", Napi::Function::New(env, WriteSyntheticFn, "writeSynthetic"));
  exports.Set("computeFeatures", Napi::Function::New(env, ComputeFeaturesFn, "computeFeatures"));
  exports.Set("readNpy", Napi::Function::New(env, ReadNpyFn, "readNpy"));
}

}  // namespace heimdall::napi
