// Developer tool: a safetensors weights file (timm names) → an ONNX model, through native/onnx.
//
//   export_onnx --weights W.safetensors --out model.onnx [--variant convnext_atto] [--head localization]
//               [--outputs N] [--in-chans 3] [--height 128 --width 32] [--opset 17] [--gelu-op]
//               [--input-name NAME] [--metadata key=value]... [--external-data-threshold BYTES]
//               [--reference-in inputs.safetensors --reference-out outputs.safetensors]
//
// Variant, head, in_chans and outputs default to the file's metadata (heimdall.*), then to atto/localization/3/2.
// --reference-in runs the same weights through libtorch (Network, eval mode) on each tensor of the file and
// writes the outputs as "<input name>/<output name>", so tests can compare libtorch, ONNX Runtime and timm.
// Prints the export report as JSON on stdout. Exit status 1 with the error on stderr on failure.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include <torch/torch.h>

#include "errors.h"
#include "model/network.h"
#include "model/registry.h"
#include "model/safetensors.h"
#include "onnx/export.h"

using namespace heimdall;

namespace {

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "export_onnx: " << problem << "\n"
            << "usage: export_onnx --weights W.safetensors --out model.onnx [--variant V] [--head H] [--outputs N]\n"
            << "       [--in-chans C] [--height H --width W] [--opset 17] [--gelu-op] [--input-name NAME]\n"
            << "       [--metadata key=value]... [--external-data-threshold BYTES]\n"
            << "       [--reference-in X.safetensors --reference-out Y.safetensors]\n";
  std::exit(2);
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  std::string weights_path, out_path, variant, head, ref_in, ref_out;
  int64_t outputs = -1, in_chans = -1, height = -1, width = -1;
  OnnxExportOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    auto number = [&]() -> int64_t {
      std::string v = value();
      try {
        return std::stoll(v);
      } catch (const std::exception&) {
        usage(a + " needs a number, got " + v);
      }
    };
    if (a == "--weights") weights_path = value();
    else if (a == "--out") out_path = value();
    else if (a == "--variant") variant = value();
    else if (a == "--head") head = value();
    else if (a == "--outputs") outputs = number();
    else if (a == "--in-chans") in_chans = number();
    else if (a == "--height") height = number();
    else if (a == "--width") width = number();
    else if (a == "--opset") options.opset = number();
    else if (a == "--gelu-op") options.gelu_op = true;
    else if (a == "--input-name") options.input_name = value();
    else if (a == "--heimdall-version") options.heimdall_version = value();
    else if (a == "--external-data-threshold") options.external_data_threshold = static_cast<uint64_t>(number());
    else if (a == "--metadata") {
      std::string kv = value();
      auto eq = kv.find('=');
      if (eq == std::string::npos) usage("--metadata takes key=value, got " + kv);
      options.metadata[kv.substr(0, eq)] = kv.substr(eq + 1);
    } else if (a == "--reference-in") ref_in = value();
    else if (a == "--reference-out") ref_out = value();
    else usage("unknown argument " + a);
  }
  if (weights_path.empty() || out_path.empty()) usage("--weights and --out are required");
  if (ref_in.empty() != ref_out.empty()) usage("--reference-in and --reference-out go together");
  if ((height < 0) != (width < 0)) usage("--height and --width go together");

  try {
    TensorFile file = load_safetensors(weights_path);
    NetworkOptions net = network_options_from_metadata(file.metadata, NetworkOptions{});
    if (!variant.empty()) net.backbone.variant = find_variant(variant).name;
    if (!head.empty()) net.head.kind = parse_head_kind(head);
    if (outputs > 0) net.head.outputs = outputs;
    if (in_chans > 0) net.backbone.in_chans = in_chans;
    if (height > 0) options.input_shape = {net.backbone.in_chans, height, width};

    OnnxExportResult r = export_onnx(net, file.tensors, out_path, options);

    std::string json = "{";
    json += "\"path\": " + json_string(r.path) + ", \"dataPath\": " + json_string(r.data_path);
    json += ", \"modelBytes\": " + std::to_string(r.model_bytes) + ", \"dataBytes\": " + std::to_string(r.data_bytes);
    json += ", \"opset\": " + std::to_string(r.opset) + ", \"irVersion\": " + std::to_string(r.ir_version);
    json += ", \"parameters\": " + std::to_string(r.parameters) + ", \"nodes\": " + std::to_string(r.nodes);
    json += ", \"initializers\": " + std::to_string(r.initializers) +
            ", \"externalTensors\": " + std::to_string(r.external_tensors);
    json += ", \"inputName\": " + json_string(r.input_name) + ", \"outputNames\": [";
    for (size_t i = 0; i < r.output_names.size(); ++i) json += (i ? ", " : "") + json_string(r.output_names[i]);
    json += "], \"seconds\": " + std::to_string(r.seconds) + ", \"metadata\": {";
    bool first = true;
    for (const auto& [k, v] : r.metadata) {
      json += (first ? "" : ", ") + json_string(k) + ": " + json_string(v);
      first = false;
    }
    json += "}";

    if (!ref_in.empty()) {
      // libtorch reference: the same weights in a Network, eval mode.
      torch::NoGradGuard no_grad;
      Network model(net);
      model->load_state_dict(file.tensors, /*strict=*/true);
      model->eval();
      TensorFile inputs = load_safetensors(ref_in);
      NamedTensors results;
      const auto names = model->output_names();
      for (const auto& [name, x] : inputs.tensors) {
        auto ys = model->forward(x.to(torch::kFloat));
        for (size_t i = 0; i < ys.size(); ++i) results.emplace_back(name + "/" + names[i], ys[i].contiguous());
      }
      save_safetensors(ref_out, results);
      json += ", \"referenceOut\": " + json_string(ref_out);
    }
    json += "}";
    std::cout << json << std::endl;
  } catch (const Error& e) {
    std::cerr << "export_onnx: " << e.code() << ": " << e.what() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "export_onnx: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
