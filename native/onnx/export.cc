#include "onnx/export.h"

#include <chrono>
#include <cstdio>

#include <torch/version.h>

#include "errors.h"
#include "model/network.h"
#include "model/registry.h"
#include "onnx/graph_builder.h"
#include "onnx/onnx_model.h"

#ifndef HEIMDALL_VERSION
#define HEIMDALL_VERSION "unknown"
#endif

namespace heimdall {

OnnxExportResult export_onnx(const NetworkOptions& network, const NamedTensors& state_dict, const std::string& path,
                             const OnnxExportOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  const HeadOptions& head = network.head;
  const int64_t in_chans = network.backbone.in_chans;

  if (options.opset < 17 || options.opset > 23)
    throw Error(kErrInvalidArgument, "opset must be between 17 and 23 (LayerNormalization needs 17), got " +
                                         std::to_string(options.opset));
  if (options.gelu_op && options.opset < 20)
    throw Error(kErrInvalidArgument, "the Gelu op needs opset ≥ 20, got opset " + std::to_string(options.opset) +
                                         "; leave geluOp off to write GELU with Erf");
  if (path.empty()) throw Error(kErrInvalidArgument, "the ONNX output path is empty");
  // The network's structure, weights not initialised: its layers write their nodes with the state dict's tensors.
  NetworkOptions structure = network;
  structure.init_weights = false;
  structure.freeze_backbone = false;
  Network net(structure);
  const Backbone& backbone = *net->backbone();
  const VariantInfo& variant = backbone.variant();
  if (!options.input_shape.empty()) backbone.check_input_chw(options.input_shape);

  onnx::Model model;
  model.ir_version = onnx::ir_version_for_opset(options.opset);
  model.opset_imports = {{"", options.opset}};
  model.producer_name = "heimdall-torch";
  model.producer_version = options.heimdall_version.empty() ? HEIMDALL_VERSION : options.heimdall_version;
  model.graph.name = variant.name + "_" + head_kind_name(head.kind);
  model.doc_string = backbone.title() + " (" + variant.name + ") with a " + head_kind_name(head.kind) + " head, exported by heimdall-torch";

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

  onnx::Weights weights(state_dict, variant.name + " network of this head");
  onnx::GraphBuilder g(model.graph, weights, {options.opset, options.gelu_op});
  net->emit_onnx(g, result.input_name);
  result.output_names = net->output_names();
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
      {"heimdall.family", variant.family},
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
  if (auto v = get("heimdall.variant")) o.backbone.variant = find_variant(*v).name;
  if (auto v = get("heimdall.in_chans")) o.backbone.in_chans = to_int("heimdall.in_chans", *v);
  if (auto v = get("heimdall.head")) o.head.kind = parse_head_kind(*v);
  if (auto v = get("heimdall.outputs")) o.head.outputs = to_int("heimdall.outputs", *v);
  return o;
}

}  // namespace heimdall
