// What a model family provides (native/model/<family>/): a backbone that turns an image-like NCHW input into pooled
// features [B, num_features], as libtorch forward and as ONNX nodes from the same layers, with timm's state_dict
// names and timm's weight initialisation. The heads (network.h) sit on any backbone; registry.h lists the families.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "onnx/graph_builder.h"

namespace heimdall {

struct BackboneOptions {
  std::string variant = "convnext_atto";  // any registered variant (registry.h), normalised by the constructor
  int64_t in_chans = 3;
  double drop_path_rate = 0.0;  // stochastic depth, linear over all blocks from 0 to this rate
  double ls_init_value = 1e-6;  // layer scale γ init, for families that have layer scale (ConvNeXt V1)
};

// One row of a family's table of variants, as the registry and the binding show it.
struct VariantInfo {
  std::string family;  // "convnext", "convnextv2": the variants are named "<family>_<size>"
  std::string name;    // "convnext_atto"
  std::vector<int64_t> depths, dims;
};

class Backbone : public torch::nn::Module {
 public:
  Backbone(const VariantInfo& variant, const BackboneOptions& options, std::string title, int64_t reduction);

  // Pooled, normalised features [B, num_features] (timm's forward_head(pre_logits=True)).
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  // The same computation as ONNX nodes reading the NCHW input `x`; returns the name of the [B, num_features] value.
  virtual std::string emit_onnx(onnx::GraphBuilder& g, const std::string& x) const = 0;
  // The family's weight initialisation (timm's _init_weights). Constructors only allocate.
  virtual void init_weights() = 0;
  virtual int64_t num_features() const = 0;
  // Where timm puts the classifier: a dotted path whose parent is a registered child ("head.fc").
  virtual std::string classifier_path() const { return "head.fc"; }

  const VariantInfo& variant() const { return variant_; }
  const BackboneOptions& options() const { return options_; }
  const std::string& title() const { return title_; }  // "ConvNeXt", for messages
  // Throws kErrShape unless the input is [B, in_chans, H, W] with H, W ≥ the total downsampling.
  void check_input(at::IntArrayRef shape) const;
  // The same for an input size [C, H, W] (ONNX export).
  void check_input_chw(const std::vector<int64_t>& chw) const;

 private:
  VariantInfo variant_;
  BackboneOptions options_;
  std::string title_;
  int64_t reduction_;
};

}  // namespace heimdall
