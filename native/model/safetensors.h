// safetensors files (https://github.com/huggingface/safetensors format): an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then raw data.
// Used for weights (timm naming, so weights move to and from Python) and for whole training checkpoints.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

namespace heimdall {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

struct TensorFile {
  NamedTensors tensors;                         // in file order, on CPU
  std::map<std::string, std::string> metadata;  // the "__metadata__" table
  const at::Tensor* find(const std::string& name) const;
};

// Writes atomically (temporary file + rename). Tensors may live on any device; they are copied to CPU.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Throws heimdall::Error(kErrFile) naming the file and the problem for missing, truncated or malformed files.
TensorFile load_safetensors(const std::string& path);

// True for a checkpoint's model weights (timm names); false for its training state: optimizer slots (optimizer.),
// random generator states (rng.), fp16 loss scaling (amp.) and — when the weights are an average (EMA) — the
// trained model's own weights (current.). What loadWeights, the ONNX export and the engine read as the weights.
bool is_weight_key(const std::string& name);

}  // namespace heimdall
