// exportOnnx(modelOrWeightsPath, outPath, options) → Promise<report>: native/onnx's exporter on a worker thread.
//
// The source is a live Model (its state dict, read under the model's lock) or a weights/checkpoint file
// (safetensors; training state such as optimizer.* is skipped; variant/head/inChans/outputs come from the file's
// metadata unless the options say otherwise). With options.validate = {batchSizes, seed}, the same weights also run
// through libtorch (eval mode) on random batches, and the inputs and outputs come back with the report so the
// TypeScript layer (lib/onnx/export.ts) can compare them with ONNX Runtime.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "errors.h"
#include "model/network.h"
#include "model/registry.h"
#include "model/safetensors.h"
#include "napi/handles.h"
#include "onnx/export.h"

namespace heimdall::napi {
namespace {

struct ReferenceBatch {
  at::Tensor input;
  std::vector<at::Tensor> outputs;
};

struct ExportJob {
  // inputs
  ModelPtr model;            // either a live model …
  std::string weights_path;  // … or a file
  NetworkOptions network;    // for a file: defaults, then the file's metadata, then explicit options
  bool has_variant = false, has_head = false, has_in_chans = false, has_outputs = false;
  std::string out_path;
  OnnxExportOptions options;
  std::vector<int64_t> validate_batches;
  uint64_t seed = 0;
  // results
  OnnxExportResult result;
  NetworkOptions used;
  std::vector<std::string> output_names;
  std::vector<ReferenceBatch> reference;
};

NamedTensors weights_only(NamedTensors tensors) {
  NamedTensors out;  // a training checkpoint also holds optimizer/RNG/AMP state
  for (auto& [k, t] : tensors)
    if (heimdall::is_weight_key(k)) out.emplace_back(k, t);
  return out;
}

// The input size of the validation batches: options.inputShape, else the usual size for the head.
std::vector<int64_t> input_chw(const ExportJob& job, const NetworkOptions& net) {
  if (!job.options.input_shape.empty()) return job.options.input_shape;
  if (net.head.kind == HeadKind::Localization) return {net.backbone.in_chans, 128, 32};  // Heimdall mel spectrograms
  return {net.backbone.in_chans, 224, 224};
}

void run_reference(ExportJob& job, Network& net) {
  torch::NoGradGuard no_grad;
  const bool was_training = net->is_training();
  net->eval();
  auto device = net->parameters().empty() ? torch::Device(torch::kCPU) : net->parameters()[0].device();
  auto gen = at::detail::createCPUGenerator(job.seed);
  const auto chw = input_chw(job, net->options());
  try {
    for (int64_t b : job.validate_batches) {
      ReferenceBatch r;
      r.input = at::randn({b, chw[0], chw[1], chw[2]}, gen, at::TensorOptions().dtype(at::kFloat));
      for (auto& y : net->forward(r.input.to(device))) r.outputs.push_back(y.to(torch::kCPU).contiguous());
      job.reference.push_back(std::move(r));
    }
  } catch (...) {
    if (was_training) net->train();
    throw;
  }
  if (was_training) net->train();
  job.output_names = net->output_names();
}

void execute(ExportJob& job) {
  if (job.model) {
    std::lock_guard<std::mutex> lock(job.model->mutex);
    job.used = job.model->net->options();
    job.result = export_onnx(job.used, job.model->net->state_dict(), job.out_path, job.options);
    if (!job.validate_batches.empty()) run_reference(job, job.model->net);
    return;
  }
  TensorFile file = load_safetensors(job.weights_path);
  NetworkOptions explicit_opts = job.network;
  NetworkOptions net = network_options_from_metadata(file.metadata, job.network);
  if (job.has_variant) net.backbone.variant = explicit_opts.backbone.variant;
  if (job.has_head) net.head.kind = explicit_opts.head.kind;
  if (job.has_in_chans) net.backbone.in_chans = explicit_opts.backbone.in_chans;
  if (job.has_outputs) net.head.outputs = explicit_opts.head.outputs;
  job.used = net;
  NamedTensors weights = weights_only(std::move(file.tensors));
  try {
    job.result = export_onnx(net, weights, job.out_path, job.options);
    if (!job.validate_batches.empty()) {
      Network model(net);
      model->load_state_dict(weights, /*strict=*/true);
      run_reference(job, model);
    }
  } catch (const heimdall::Error& e) {
    if (e.code() == kErrWeights) throw heimdall::Error(e.code(), job.weights_path + ": " + e.what());
    throw;
  }
}

Napi::Array int_array(Napi::Env env, const std::vector<int64_t>& v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(v[i])));
  return a;
}

Napi::Value report_to_js(Napi::Env env, const ExportJob& job) {
  const OnnxExportResult& r = job.result;
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", r.path);
  o.Set("dataPath", r.data_path.empty() ? env.Null() : Napi::String::New(env, r.data_path));
  o.Set("modelBytes", static_cast<double>(r.model_bytes));
  o.Set("dataBytes", static_cast<double>(r.data_bytes));
  o.Set("opset", static_cast<double>(r.opset));
  o.Set("irVersion", static_cast<double>(r.ir_version));
  o.Set("parameters", static_cast<double>(r.parameters));
  o.Set("nodes", static_cast<double>(r.nodes));
  o.Set("initializers", static_cast<double>(r.initializers));
  o.Set("externalTensors", static_cast<double>(r.external_tensors));
  o.Set("inputName", r.input_name);
  o.Set("inputShape", int_array(env, r.input_shape));  // -1: symbolic
  Napi::Array names = Napi::Array::New(env, r.output_names.size());
  for (size_t i = 0; i < r.output_names.size(); ++i) names.Set(static_cast<uint32_t>(i), r.output_names[i]);
  o.Set("outputNames", names);
  o.Set("seconds", r.seconds);
  o.Set("variant", job.used.backbone.variant);
  o.Set("head", head_kind_name(job.used.head.kind));
  o.Set("inChans", static_cast<double>(job.used.backbone.in_chans));
  Napi::Object meta = Napi::Object::New(env);
  for (const auto& [k, v] : r.metadata) meta.Set(k, v);
  o.Set("metadata", meta);
  Napi::Array ref = Napi::Array::New(env, job.reference.size());
  for (size_t i = 0; i < job.reference.size(); ++i) {
    const auto& b = job.reference[i];
    Napi::Object e = Napi::Object::New(env);
    e.Set("shape", int_array(env, b.input.sizes().vec()));
    e.Set("input", TypedArrayFromTensor(env, b.input));
    Napi::Object outs = Napi::Object::New(env);
    for (size_t k = 0; k < b.outputs.size() && k < job.output_names.size(); ++k) {
      Napi::Object t = Napi::Object::New(env);
      t.Set("data", TypedArrayFromTensor(env, b.outputs[k].to(at::kFloat)));
      t.Set("shape", int_array(env, b.outputs[k].sizes().vec()));
      outs.Set(job.output_names[k], t);
    }
    e.Set("outputs", outs);
    ref.Set(static_cast<uint32_t>(i), e);
  }
  o.Set("libtorch", ref);
  return o;
}

Napi::Value ExportOnnx(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    auto job = std::make_shared<ExportJob>();
    if (info.Length() > 0 && info[0].IsString()) {
      job->weights_path = info[0].As<Napi::String>().Utf8Value();
      if (job->weights_path.empty()) throw heimdall::Error(kErrInvalidArgument, "the weights path is empty");
    } else {
      job->model = UnwrapModel(info.Length() > 0 ? info[0] : info.Env().Undefined(), "exportOnnx's source (a Model or a weights file path)");
    }
    job->out_path = StringArg(info, 1, "outPath");
    Napi::Object o = OptionsArg(info, 2);

    OnnxExportOptions& x = job->options;
    // lib/onnx/export.ts sends complete options (exportOnnxOptionsSchema); the fallbacks are OnnxExportOptions' own.
    x.opset = GetInt(o, "opset", x.opset);
    x.gelu_op = GetBool(o, "geluOp", x.gelu_op);
    x.input_name = GetString(o, "inputName", "");
    x.input_shape = GetIntArray(o, "inputShape", {});
    x.heimdall_version = GetString(o, "heimdallVersion", HEIMDALL_VERSION);
    const double threshold = GetNumber(o, "externalDataThreshold", static_cast<double>(x.external_data_threshold));
    if (threshold < 0) throw heimdall::Error(kErrInvalidArgument, "externalDataThreshold must be ≥ 0");
    x.external_data_threshold = static_cast<uint64_t>(threshold);
    if (o.Has("metadata") && o.Get("metadata").IsObject()) {
      Napi::Object meta = o.Get("metadata").As<Napi::Object>();
      Napi::Array keys = meta.GetPropertyNames();
      for (uint32_t i = 0; i < keys.Length(); ++i) {
        std::string k = keys.Get(i).ToString().Utf8Value();
        x.metadata[k] = meta.Get(k).ToString().Utf8Value();
      }
    }

    NetworkOptions& n = job->network;
    job->has_variant = o.Has("variant");
    job->has_head = o.Has("head");
    job->has_in_chans = o.Has("inChans");
    job->has_outputs = o.Has("outputs");
    if (job->has_variant) n.backbone.variant = find_variant(GetString(o, "variant", "")).name;
    if (job->has_head) n.head.kind = parse_head_kind(GetString(o, "head", ""));
    // Absent fields keep NetworkOptions' own defaults (then a weights file's metadata overrides them).
    n.backbone.in_chans = GetInt(o, "inChans", n.backbone.in_chans);
    n.head.outputs = GetInt(o, "outputs", n.head.outputs);
    n.head.sigma_min = GetNumber(o, "sigmaMin", n.head.sigma_min);
    n.head.sigma_max = GetNumber(o, "sigmaMax", n.head.sigma_max);

    if (o.Has("validate") && o.Get("validate").IsObject()) {
      Napi::Object v = o.Get("validate").As<Napi::Object>();
      job->validate_batches = GetIntArray(v, "batchSizes", {});
      if (job->validate_batches.empty()) throw heimdall::Error(kErrInvalidArgument, "validate.batchSizes must list at least one batch size");
      job->seed = static_cast<uint64_t>(GetInt(v, "seed", static_cast<int64_t>(job->seed)));
      for (int64_t b : job->validate_batches)
        if (b < 1 || b > 1024) throw heimdall::Error(kErrInvalidArgument, "validate.batchSizes must be in [1, 1024]");
    }
    return Task::Run(
        info.Env(), [job] { execute(*job); }, [job](Napi::Env env) { return report_to_js(env, *job); },
        "heimdall.exportOnnx");
  });
}

}  // namespace

void InitOnnx(Napi::Env env, Napi::Object exports) {
  exports.Set("exportOnnx", Napi::Function::New(env, ExportOnnx, "exportOnnx"));
}

}  // namespace heimdall::napi
