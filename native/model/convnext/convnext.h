// ConvNeXt (Liu et al. 2022) in libtorch, laid out like timm's models/convnext.py: a block, a stage, the model, the
// table of variants. Parameter names and shapes equal timm's state_dict, so weights move both ways through
// safetensors files. The model is also the skeleton of ConvNeXt V2 (native/model/convnextv2/), which changes the
// block's MLP (a norm after GELU) and drops layer scale through ConvNeXtDesign, as timm's ConvNeXt class does with
// use_grn / ls_init_value.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/backbone.h"
#include "model/layers.h"
#include "model/registry.h"

namespace heimdall {

struct ConvNeXtVariant {
  std::string name;  // "convnext_atto" …
  std::array<int64_t, 4> depths;
  std::array<int64_t, 4> dims;
  bool conv_mlp;  // timm's atto … nano: 1×1-convolution MLP (weights [4C, C, 1, 1]) and LayerNorm2d; else Linear in NHWC
};

// A layer between the MLP's GELU and fc2 (ConvNeXt V2's Global Response Normalization), registered as mlp.<name>.
class MlpNormImpl : public torch::nn::Module {
 public:
  // On the NHWC hidden activations [B, H, W, 4C].
  virtual torch::Tensor forward_nhwc(const torch::Tensor& x) = 0;
  virtual std::string emit_onnx(GraphBuilder& g, const std::string& scope, const std::string& x, Layout layout) const = 0;
};

// What sets a ConvNeXt family apart: its name and title, layer scale or not, the MLP's norm (none in V1).
struct ConvNeXtDesign {
  std::string family = "convnext";
  std::string title = "ConvNeXt";
  bool layer_scale = true;  // γ per block, initialised to BackboneOptions::ls_init_value
  std::string mlp_norm_name;
  std::function<std::shared_ptr<MlpNormImpl>(int64_t hidden)> mlp_norm;
};

// depthwise 7×7 conv → norm → fc1 → GELU → [mlp norm] → fc2 → [·γ] → drop path → + x
class ConvNeXtBlockImpl : public torch::nn::Module {
 public:
  ConvNeXtBlockImpl(int64_t dim, bool conv_mlp, double drop_path, double ls_init_value, const ConvNeXtDesign& design);
  torch::Tensor forward(const torch::Tensor& x);
  std::string emit_onnx(GraphBuilder& g, const std::string& scope, const std::string& x) const;

 private:
  bool conv_mlp_;
  double drop_path_;
  Conv2d conv_dw_{nullptr};
  LayerNorm norm_{nullptr};
  Linear fc1_{nullptr}, fc2_{nullptr};
  std::shared_ptr<MlpNormImpl> mlp_norm_;
  std::string mlp_norm_name_;
  torch::Tensor gamma_;  // undefined without layer scale
};
TORCH_MODULE(ConvNeXtBlock);

// [downsample: LayerNorm2d + 2×2 conv stride 2] → blocks
class ConvNeXtStageImpl : public torch::nn::Module {
 public:
  ConvNeXtStageImpl(int64_t in_dim, int64_t out_dim, int64_t depth, bool downsample, bool conv_mlp,
                    const std::vector<double>& drop_path_rates, double ls_init_value, const ConvNeXtDesign& design);
  torch::Tensor forward(torch::Tensor x);
  std::string emit_onnx(GraphBuilder& g, const std::string& scope, const std::string& x) const;

 private:
  LayerNorm down_norm_{nullptr};
  Conv2d down_conv_{nullptr};
  std::vector<ConvNeXtBlock> blocks_;
};
TORCH_MODULE(ConvNeXtStage);

// The backbone: stem (4×4 conv stride 4 + LayerNorm2d) → 4 stages → global mean → head.norm. The classifier
// `head.fc` belongs to the heads (network.h).
class ConvNeXtImpl : public Backbone {
 public:
  ConvNeXtImpl(const ConvNeXtVariant& variant, const VariantInfo& info, const BackboneOptions& options,
               const ConvNeXtDesign& design);
  torch::Tensor forward_features(const torch::Tensor& x);  // [B, C, H/32, W/32]
  torch::Tensor forward(const torch::Tensor& x) override;
  std::string emit_onnx(GraphBuilder& g, const std::string& x) const override;
  void init_weights() override;
  int64_t num_features() const override { return num_features_; }

 private:
  int64_t num_features_;
  Conv2d stem_conv_{nullptr};
  LayerNorm stem_norm_{nullptr};
  std::vector<ConvNeXtStage> stages_;
  LayerNorm head_norm_{nullptr};
};

// A ConvNeXt-shaped family from its table of variants and its design (ConvNeXt V1 and V2).
ModelFamily convnext_like_family(std::vector<ConvNeXtVariant> variants, ConvNeXtDesign design);
// ConvNeXt V1: atto … xlarge.
ModelFamily convnext_family();

}  // namespace heimdall
