// ONNX export of a Network (a backbone of any registered family + head), written by our own encoder (onnx_model.h).
//
// The exporter knows no model: it builds the network's structure (weights not initialised), asks it for its nodes
// (NetworkImpl::emit_onnx → the family's layers, native/model/), and writes the file with its inputs, outputs and
// metadata. The graph has eval semantics (no drop path, BatchNorm with running statistics, no dropout). Weights come
// from a state dict with timm's names (a live model's state_dict(), a safetensors weights file, a checkpoint),
// checked tensor by tensor against the layers that take them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/safetensors.h"

namespace heimdall {

struct NetworkOptions;

struct OnnxExportOptions {
  int64_t opset = 17;     // 17 … 23 (LayerNormalization needs ≥ 17)
  bool gelu_op = false;   // the Gelu op (opset ≥ 20) instead of the Erf form
  std::string input_name;  // default: "mel_spectrogram" (localization), "input" (other heads)
  // {C, H, W}: fixed H and W in the graph and in the metadata. Empty: H and W are symbolic ("height", "width").
  std::vector<int64_t> input_shape;
  // Extra metadata_props (e.g. "heimdall.normalization"); they may override the ones the exporter writes.
  std::map<std::string, std::string> metadata;
  std::string heimdall_version;  // empty: the version compiled in (HEIMDALL_VERSION), else "unknown"
  // ONNX external data: above this many bytes of weights, tensors ≥ external_data_min_bytes are written to
  // "<path>.data" next to the model (protobuf files are limited to 2 GiB). Lower it to test the path.
  uint64_t external_data_threshold = (uint64_t{2} << 30) - (uint64_t{64} << 20);
  uint64_t external_data_min_bytes = 1024;
};

struct OnnxExportResult {
  std::string path;
  std::string data_path;  // external data file, empty when the weights are inline
  uint64_t model_bytes = 0, data_bytes = 0;
  int64_t opset = 0, ir_version = 0;
  int64_t parameters = 0;  // weight values written (BatchNorm statistics included)
  size_t nodes = 0, initializers = 0, external_tensors = 0;
  std::string input_name;
  std::vector<int64_t> input_shape;  // [-1 (batch), C, H, W]; -1 for symbolic dims
  std::vector<std::string> output_names;
  std::map<std::string, std::string> metadata;  // the metadata_props written
  double seconds = 0;
};

// Writes `path` (and "<path>.data" when needed) atomically. Throws heimdall::Error: kErrWeights when the
// state dict does not fit the network (another variant or head: the tensor is named), kErrInvalidArgument
// for bad options, kErrFile for I/O problems.
OnnxExportResult export_onnx(const NetworkOptions& network, const NamedTensors& state_dict, const std::string& path,
                             const OnnxExportOptions& options = {});

// The NetworkOptions a weights file describes through its metadata (heimdall.variant, heimdall.in_chans,
// heimdall.head, heimdall.outputs: see network_metadata()). Missing keys keep `defaults`.
NetworkOptions network_options_from_metadata(const std::map<std::string, std::string>& metadata,
                                             const NetworkOptions& defaults);

}  // namespace heimdall
