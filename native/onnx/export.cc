#include "onnx/export.h"

#include <chrono>
#include <cmath>
#include <memory>
#include <set>

#include <torch/version.h>

#include "errors.h"
#include "model/network.h"
#include "onnx/graph_builder.h"
#include "onnx/onnx_model.h"

#ifndef HEIMDALL_VERSION
#define HEIMDALL_VERSION "unknown"
#endif

namespace heimdall {

namespace {

using onnx::Attribute;
using onnx::GraphBuilder;

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// ---- weights: the state dict, checked tensor by tensor against what the graph needs ------------------

class Weights {
 public:
  explicit Weights(const NamedTensors& state_dict, std::string variant) : variant_(std::move(variant)) {
    for (const auto& [name, t] : state_dict) tensors_[name] = t;
  }

  // The tensor `name` as contiguous float32 on the CPU, checked against `shape`.
  at::Tensor get(const std::string& name, const std::vector<int64_t>& shape) {
    auto it = tensors_.find(name);
    if (it == tensors_.end())
      throw Error(kErrWeights, "the weights lack \"" + name + "\", which a " + variant_ +
                                   " network of this head needs (weights of another variant or head?)");
    const at::Tensor& t = it->second;
    std::vector<int64_t> actual(t.sizes().begin(), t.sizes().end());
    if (actual != shape)
      throw Error(kErrWeights, "\"" + name + "\" has shape " + shape_string(actual) + " but a " + variant_ +
                                   " network of this head needs " + shape_string(shape) +
                                   " (weights of another variant, head or inChans?)");
    used_.insert(name);
    at::Tensor c = t.detach();
    if (!c.device().is_cpu()) c = c.cpu();
    if (c.scalar_type() != at::kFloat) c = c.to(at::kFloat);
    c = c.contiguous();
    if (!c.isfinite().all().item<bool>())  // a NaN in a checkpoint is a bug to report, not to export
      throw Error(kErrWeights, "\"" + name + "\" holds NaN or infinite values");
    parameters_ += c.numel();
    return c;
  }

  void check_all_used() const {
    std::vector<std::string> extra;
    for (const auto& [name, _] : tensors_)
      if (!used_.count(name) && !ends_with(name, "num_batches_tracked")) extra.push_back(name);
    if (extra.empty()) return;
    std::string list;
    for (size_t i = 0; i < extra.size() && i < 5; ++i) list += (i ? ", " : "") + extra[i];
    if (extra.size() > 5) list += ", … (" + std::to_string(extra.size()) + " in all)";
    throw Error(kErrWeights, "the weights hold tensors a " + variant_ + " network of this head does not have: " + list +
                                 " (weights of another variant or head?)");
  }

  int64_t parameters() const { return parameters_; }

 private:
  std::string variant_;
  std::map<std::string, at::Tensor> tensors_;
  std::set<std::string> used_;
  int64_t parameters_ = 0;
};

onnx::Tensor initializer_of(const std::string& name, const at::Tensor& t, std::vector<int64_t> dims) {
  auto owner = std::make_shared<at::Tensor>(t);
  onnx::Tensor out;
  out.name = name;
  out.data_type = onnx::DataType::Float;
  out.dims = std::move(dims);
  out.data = owner->data_ptr();
  out.bytes = static_cast<size_t>(owner->numel()) * sizeof(float);
  out.keepalive = owner;
  return out;
}

// ---- the graph, one function per piece of native/model/convnext.cc and network.cc ---------------------

class NetworkGraph {
 public:
  NetworkGraph(GraphBuilder& g, Weights& w, const OnnxExportOptions& o) : g_(g), w_(w), o_(o) {}

  // A state-dict tensor as an initializer of the same name and shape.
  std::string param(const std::string& name, const std::vector<int64_t>& shape) {
    return g_.initializer(initializer_of(name, w_.get(name, shape), shape));
  }

  std::string conv(const std::string& scope, const std::string& x, int64_t in, int64_t out, int64_t k, int64_t stride,
                   int64_t pad, int64_t groups = 1) {
    auto weight = param(scope + ".weight", {out, in / groups, k, k});
    auto bias = param(scope + ".bias", {out});
    return g_.add(scope, "Conv", {x, weight, bias},
                  {Attribute::of_ints("kernel_shape", {k, k}), Attribute::of_ints("strides", {stride, stride}),
                   Attribute::of_ints("pads", {pad, pad, pad, pad}), Attribute::of_int("group", groups)});
  }

  // LayerNorm over the last axis (ChannelsLastNorm, and LayerNorm2d once in NHWC), eps 1e-6.
  std::string layer_norm(const std::string& scope, const std::string& x, int64_t channels, double eps = 1e-6) {
    auto scale = param(scope + ".weight", {channels});
    auto bias = param(scope + ".bias", {channels});
    return g_.add(scope, "LayerNormalization", {x, scale, bias},
                  {Attribute::of_int("axis", -1), Attribute::of_float("epsilon", static_cast<float>(eps))});
  }

  std::string to_nhwc(const std::string& scope, const std::string& x) {
    return g_.add(scope, "Transpose", {x}, {Attribute::of_ints("perm", {0, 2, 3, 1})});
  }
  std::string to_nchw(const std::string& scope, const std::string& x) {
    return g_.add(scope, "Transpose", {x}, {Attribute::of_ints("perm", {0, 3, 1, 2})});
  }

  // LayerNorm2d: normalise the channels of an NCHW tensor.
  std::string layer_norm_2d(const std::string& scope, const std::string& x, int64_t channels) {
    return to_nchw(scope, layer_norm(scope, to_nhwc(scope, x), channels));
  }

  // nn.Linear on the last axis of an NHWC tensor: MatMul with Wᵀ, then Add.
  std::string linear_nhwc(const std::string& scope, const std::string& x, int64_t in, int64_t out) {
    at::Tensor wt = w_.get(scope + ".weight", {out, in}).t().contiguous();
    auto weight = g_.initializer(initializer_of(scope + ".weight.T", wt, {in, out}));
    auto bias = param(scope + ".bias", {out});
    return g_.add(scope, "Add", {g_.add(scope, "MatMul", {x, weight}), bias});
  }

  // nn.Linear on [B, in]: Gemm(x, W, b, transB).
  std::string linear(const std::string& scope, const std::string& x, int64_t in, int64_t out,
                     const std::string& output_name = "") {
    auto weight = param(scope + ".weight", {out, in});
    auto bias = param(scope + ".bias", {out});
    std::vector<Attribute> attrs = {Attribute::of_int("transB", 1)};
    if (!output_name.empty()) {
      g_.add_named(scope, "Gemm", {x, weight, bias}, output_name, attrs);
      return output_name;
    }
    return g_.add(scope, "Gemm", {x, weight, bias}, attrs);
  }

  // Exact GELU: x·½·(1 + erf(x/√2)), or the Gelu op (opset ≥ 20).
  std::string gelu(const std::string& scope, const std::string& x) {
    if (o_.gelu_op) return g_.add(scope, "Gelu", {x}, {Attribute::of_string("approximate", "none")});
    auto erf = g_.add(scope, "Erf", {g_.add(scope, "Div", {x, g_.scalar(static_cast<float>(std::sqrt(2.0)))})});
    auto one_plus = g_.add(scope, "Add", {erf, g_.scalar(1.0f)});
    return g_.add(scope, "Mul", {g_.add(scope, "Mul", {x, one_plus}), g_.scalar(0.5f)});
  }

  // ConvNeXtBlock: depthwise 7×7 → norm → fc1 → GELU → fc2 → ·γ → + x (drop path is identity in eval).
  std::string block(const std::string& scope, const std::string& x, int64_t dim, bool conv_mlp) {
    std::string y = conv(scope + ".conv_dw", x, dim, dim, 7, 1, 3, dim);
    at::Tensor gamma = w_.get(scope + ".gamma", {dim});
    if (conv_mlp) {
      y = layer_norm_2d(scope + ".norm", y, dim);
      y = conv(scope + ".mlp.fc1", y, dim, 4 * dim, 1, 1, 0);
      y = gelu(scope + ".mlp", y);
      y = conv(scope + ".mlp.fc2", y, 4 * dim, dim, 1, 1, 0);
      auto g = g_.initializer(initializer_of(scope + ".gamma", gamma, {dim, 1, 1}));
      y = g_.add(scope, "Mul", {y, g});
    } else {
      y = to_nhwc(scope, y);
      y = layer_norm(scope + ".norm", y, dim);
      y = linear_nhwc(scope + ".mlp.fc1", y, dim, 4 * dim);
      y = gelu(scope + ".mlp", y);
      y = linear_nhwc(scope + ".mlp.fc2", y, 4 * dim, dim);
      auto g = g_.initializer(initializer_of(scope + ".gamma", gamma, {dim}));
      y = to_nchw(scope, g_.add(scope, "Mul", {y, g}));
    }
    return g_.add(scope, "Add", {y, x});
  }

  std::string stage(int s, const std::string& x, const ConvNeXtVariant& v) {
    const std::string scope = "stages." + std::to_string(s);
    std::string y = x;
    const int64_t dim = v.dims[s];
    if (s > 0) {
      y = layer_norm_2d(scope + ".downsample.0", y, v.dims[s - 1]);
      y = conv(scope + ".downsample.1", y, v.dims[s - 1], dim, 2, 2, 0);
    }
    for (int64_t b = 0; b < v.depths[s]; ++b) y = block(scope + ".blocks." + std::to_string(b), y, dim, v.conv_mlp);
    return y;
  }

  // The backbone up to the pooled, normalised features [B, C] (ConvNeXtImpl::forward).
  std::string backbone(const std::string& x, const ConvNeXtVariant& v, int64_t in_chans) {
    std::string y = conv("stem.0", x, in_chans, v.dims[0], 4, 4, 0);
    y = layer_norm_2d("stem.1", y, v.dims[0]);
    for (int s = 0; s < 4; ++s) y = stage(s, y, v);
    // Mean over H, W, then LayerNorm over C: the same as timm's LayerNorm2d on [B, C, 1, 1] + flatten.
    if (o_.opset >= 18) {
      y = g_.add("head.global_pool", "ReduceMean", {y, g_.int64s({2, 3})}, {Attribute::of_int("keepdims", 0)});
    } else {
      y = g_.add("head.global_pool", "ReduceMean", {y},
                 {Attribute::of_ints("axes", {2, 3}), Attribute::of_int("keepdims", 0)});
    }
    return layer_norm("head.norm", y, v.dims[3]);
  }

  // localization_mlp (network.cc): [Linear → BatchNorm1d → ReLU → Dropout] × hidden, Linear → 2.
  std::string localization_mlp(const std::string& scope, const std::string& x, int64_t in, const HeadOptions& h,
                               const std::string& output_name) {
    std::string y = x;
    int64_t width = in;
    for (size_t i = 0; i < h.hidden.size(); ++i) {
      const std::string idx = scope + "." + std::to_string(4 * i);
      const std::string bn = scope + "." + std::to_string(4 * i + 1);
      const int64_t out = h.hidden[i];
      y = linear(idx, y, width, out);
      auto scale = param(bn + ".weight", {out});
      auto bias = param(bn + ".bias", {out});
      auto mean = param(bn + ".running_mean", {out});
      auto var = param(bn + ".running_var", {out});
      y = g_.add(bn, "BatchNormalization", {y, scale, bias, mean, var}, {Attribute::of_float("epsilon", 1e-5f)});
      y = g_.add(scope + "." + std::to_string(4 * i + 2), "Relu", {y});
      width = out;  // Dropout: identity in eval
    }
    return linear(scope + "." + std::to_string(4 * h.hidden.size()), y, width, 2, output_name);
  }

 private:
  GraphBuilder& g_;
  Weights& w_;
  const OnnxExportOptions& o_;
};

}  // namespace

OnnxExportResult export_onnx(const NetworkOptions& network, const NamedTensors& state_dict, const std::string& path,
                             const OnnxExportOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  const ConvNeXtVariant& variant = convnext_variant(network.backbone.variant);
  const HeadOptions& head = network.head;
  const int64_t in_chans = network.backbone.in_chans;

  if (options.opset < 17 || options.opset > 23)
    throw Error(kErrInvalidArgument, "opset must be between 17 and 23 (LayerNormalization needs 17), got " +
                                         std::to_string(options.opset));
  if (options.gelu_op && options.opset < 20)
    throw Error(kErrInvalidArgument, "the Gelu op needs opset ≥ 20, got opset " + std::to_string(options.opset) +
                                         "; leave geluOp off to write GELU with Erf");
  if (path.empty()) throw Error(kErrInvalidArgument, "the ONNX output path is empty");
  if (!options.input_shape.empty()) {
    const auto& s = options.input_shape;
    if (s.size() != 3)
      throw Error(kErrInvalidArgument, "inputShape must be [channels, height, width], got " + shape_string(s));
    if (s[0] != in_chans)
      throw Error(kErrShape, "inputShape has " + std::to_string(s[0]) + " channels but the model takes " +
                                 std::to_string(in_chans));
    if (s[1] < 32 || s[2] < 32)
      throw Error(kErrShape, "ConvNeXt downsamples by 32: input height and width must be ≥ 32, got " + shape_string(s));
  }
  if (head.kind == HeadKind::Localization && (head.sigma_min <= 0 || head.sigma_max <= head.sigma_min))
    throw Error(kErrInvalidArgument, "uncertainty clamp must satisfy 0 < sigmaMin < sigmaMax");
  if (head.kind != HeadKind::Localization && head.outputs < 1)
    throw Error(kErrInvalidArgument, "head outputs must be ≥ 1, got " + std::to_string(head.outputs));

  onnx::Model model;
  model.ir_version = onnx::ir_version_for_opset(options.opset);
  model.opset_imports = {{"", options.opset}};
  model.producer_name = "heimdall-torch";
  model.producer_version = options.heimdall_version.empty() ? HEIMDALL_VERSION : options.heimdall_version;
  model.graph.name = variant.name + "_" + head_kind_name(head.kind);
  model.doc_string = "ConvNeXt (" + variant.name + ") with a " + head_kind_name(head.kind) + " head, exported by heimdall-torch";

  OnnxExportResult result;
  result.path = path;
  result.opset = options.opset;
  result.ir_version = model.ir_version;
  result.input_name = !options.input_name.empty() ? options.input_name
                      : head.kind == HeadKind::Localization ? "mel_spectrogram"
                                                             : "input";

  // Inputs and outputs: a symbolic batch axis, H and W fixed when given.
  onnx::ValueInfo input{result.input_name, onnx::DataType::Float, {{-1, "batch"}, {in_chans, ""}}};
  if (options.input_shape.empty()) {
    input.shape.push_back({-1, "height"});
    input.shape.push_back({-1, "width"});
    result.input_shape = {-1, in_chans, -1, -1};
  } else {
    input.shape.push_back({options.input_shape[1], ""});
    input.shape.push_back({options.input_shape[2], ""});
    result.input_shape = {-1, in_chans, options.input_shape[1], options.input_shape[2]};
  }
  model.graph.inputs.push_back(input);

  Weights weights(state_dict, variant.name);
  GraphBuilder g(model.graph);
  NetworkGraph net(g, weights, options);
  const std::string features = net.backbone(result.input_name, variant, in_chans);
  const int64_t num_features = variant.dims[3];
  if (head.kind == HeadKind::Localization) {
    result.output_names = {"positions", "uncertainties"};
    net.localization_mlp("position_head", features, num_features, head, "positions");
    auto raw = net.localization_mlp("uncertainty_head", features, num_features, head, "uncertainty_head/output");
    auto softplus = g.add("uncertainty_head", "Softplus", {raw});
    g.add_named("uncertainty_head", "Clip",
                {softplus, g.scalar(static_cast<float>(head.sigma_min)), g.scalar(static_cast<float>(head.sigma_max))},
                "uncertainties");
  } else {
    result.output_names = {head.kind == HeadKind::Classification ? "logits" : "outputs"};
    net.linear("head.fc", features, num_features, head.outputs, result.output_names[0]);
  }
  weights.check_all_used();
  const int64_t out_width = head.kind == HeadKind::Localization ? 2 : head.outputs;
  for (const auto& name : result.output_names)
    model.graph.outputs.push_back({name, onnx::DataType::Float, {{-1, "batch"}, {out_width, ""}}});

  // Metadata: what the file holds and who wrote it.
  std::string shape_meta = "[" + std::to_string(in_chans) + ", " +
                           (options.input_shape.empty() ? std::string("height, width")
                                                        : std::to_string(options.input_shape[1]) + ", " +
                                                              std::to_string(options.input_shape[2])) +
                           "]";
  std::string outputs_meta;
  for (const auto& n : result.output_names) outputs_meta += (outputs_meta.empty() ? "" : ",") + n;
  std::map<std::string, std::string> meta = {
      {"heimdall.variant", variant.name},
      {"heimdall.head", head_kind_name(head.kind)},
      {"heimdall.in_chans", std::to_string(in_chans)},
      {"heimdall.outputs", std::to_string(out_width)},
      {"heimdall.input_name", result.input_name},
      {"heimdall.input_shape", shape_meta},
      {"heimdall.output_names", outputs_meta},
      {"heimdall.opset", std::to_string(options.opset)},
      {"heimdall.heimdall_torch_version", model.producer_version},
      {"heimdall.libtorch_version", TORCH_VERSION},
  };
  if (head.kind == HeadKind::Localization) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", head.sigma_min);
    meta["heimdall.sigma_min"] = buf;
    std::snprintf(buf, sizeof buf, "%.9g", head.sigma_max);
    meta["heimdall.sigma_max"] = buf;
  }
  for (const auto& [k, v] : options.metadata) meta[k] = v;
  for (const auto& [k, v] : meta) model.metadata_props.push_back({k, v});
  result.metadata = meta;

  onnx::WriteOptions write;
  write.external_threshold = options.external_data_threshold;
  write.external_min_bytes = options.external_data_min_bytes;
  const onnx::WriteResult written = onnx::write_model(model, path, write);

  result.data_path = written.data_path;
  result.model_bytes = written.model_bytes;
  result.data_bytes = written.data_bytes;
  result.external_tensors = written.external_tensors;
  result.parameters = weights.parameters();
  result.nodes = model.graph.nodes.size();
  result.initializers = model.graph.initializers.size();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return result;
}

NetworkOptions network_options_from_metadata(const std::map<std::string, std::string>& metadata,
                                             const NetworkOptions& defaults) {
  NetworkOptions o = defaults;
  auto get = [&](const char* key) -> const std::string* {
    auto it = metadata.find(key);
    return it == metadata.end() ? nullptr : &it->second;
  };
  auto to_int = [](const std::string& key, const std::string& v) {
    try {
      size_t used = 0;
      long long n = std::stoll(v, &used);
      if (used != v.size()) throw std::invalid_argument(v);
      return static_cast<int64_t>(n);
    } catch (const std::exception&) {
      throw Error(kErrFile, "metadata \"" + key + "\" should be an integer, got \"" + v + "\"");
    }
  };
  if (auto v = get("heimdall.variant")) o.backbone.variant = convnext_variant(*v).name;
  if (auto v = get("heimdall.in_chans")) o.backbone.in_chans = to_int("heimdall.in_chans", *v);
  if (auto v = get("heimdall.head")) o.head.kind = parse_head_kind(*v);
  if (auto v = get("heimdall.outputs")) o.head.outputs = to_int("heimdall.outputs", *v);
  return o;
}

}  // namespace heimdall
