// A backbone of any registered family (registry.h) with a task head: what the engine trains and the exporter writes.
//   localization   → positions [B, 2] (lat, lon) and uncertainties [B, 2] (σx, σy: softplus, clamped)
//   classification → logits [B, classes]   (timm's `head.fc`, so timm classifiers load as they are)
//   regression     → outputs [B, n]        (also `head.fc`)
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <memory>

#include <torch/nn/modules/container/sequential.h>

#include "model/backbone.h"
#include "model/layers.h"
#include "model/safetensors.h"

namespace heimdall {

enum class HeadKind { Localization, Classification, Regression };
HeadKind parse_head_kind(const std::string& name);  // throws listing the valid kinds
const char* head_kind_name(HeadKind kind);

struct HeadOptions {
  HeadKind kind = HeadKind::Localization;
  int64_t outputs = 2;  // classes (classification) / values (regression); localization is always 2 + 2
  double sigma_min = 0.01, sigma_max = 1.0;  // uncertainty clamp (the reference service's)
  std::vector<int64_t> hidden = {128, 64};  // localization MLP widths
  std::vector<double> dropout = {0.3, 0.2};
};

struct NetworkOptions {
  BackboneOptions backbone;
  HeadOptions head;
  bool freeze_backbone = false;
  bool init_weights = true;  // false: allocate only (the ONNX exporter reads the weights from a state dict)
};

struct WeightsReport {
  std::vector<std::string> loaded, missing, unexpected, mismatched;  // mismatched: "key: file [..] vs model [..]"
};

class NetworkImpl : public torch::nn::Module {
 public:
  explicit NetworkImpl(const NetworkOptions& options);

  // One tensor per output name, in output_names() order.
  std::vector<torch::Tensor> forward(const torch::Tensor& x);
  std::vector<std::string> output_names() const;
  const NetworkOptions& options() const { return options_; }
  std::shared_ptr<Backbone> backbone() const { return backbone_; }
  const std::string& family() const { return backbone_->variant().family; }

  // The same network (eval semantics: no drop path or dropout, BatchNorm with running statistics) as ONNX nodes
  // reading `input`, weights from the builder's state dict; the outputs get output_names().
  void emit_onnx(onnx::GraphBuilder& g, const std::string& input) const;

  // Parameters and buffers with timm's names (BatchNorm counters included).
  NamedTensors state_dict() const;
  // Copies tensors with matching names and shapes. strict: every model tensor must be present with the
  // same shape and nothing else may be there. Non-strict (pretrained backbones): the whole backbone must
  // load; head tensors that are missing or of another shape are reported and left as initialised.
  WeightsReport load_state_dict(const NamedTensors& tensors, bool strict);
  void set_backbone_frozen(bool frozen);
  // syncBatchNorm: a differentiable sum over the data-parallel ranks; while set, the heads' BatchNorm layers
  // normalise training batches with the statistics of all ranks' batches (as torch.nn.SyncBatchNorm). Empty: per
  // process (eval mode never syncs).
  using BatchStatsReducer = std::function<torch::Tensor(const torch::Tensor&)>;
  void set_batch_stats_reducer(BatchStatsReducer reducer) { reducer_ = std::move(reducer); }
  const BatchStatsReducer& batch_stats_reducer() const { return reducer_; }
  // The backbone's parameter names (what BackboneFinetuning freezes): every parameter but the heads' (the
  // localization MLPs, or the classifier head.fc).
  std::vector<std::string> backbone_parameter_names() const;
  bool backbone_frozen() const { return options_.freeze_backbone; }
  // Parameters the optimizer updates (frozen ones excluded), with names.
  std::vector<std::pair<std::string, torch::Tensor>> trainable_parameters() const;

 private:
  NetworkOptions options_;
  std::shared_ptr<Backbone> backbone_;
  Linear fc_{nullptr};                                             // classification / regression
  torch::nn::Sequential position_head_{nullptr}, uncertainty_head_{nullptr};  // localization
  BatchStatsReducer reducer_;
  torch::Tensor run_head(torch::nn::Sequential& head, torch::Tensor x);
};
TORCH_MODULE(Network);

// Metadata stored next to weights so a file says what it holds (family, variant, head, channels).
std::map<std::string, std::string> network_metadata(const NetworkOptions& options);

}  // namespace heimdall
