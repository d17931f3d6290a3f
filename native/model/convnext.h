// The ConvNeXt family (Liu et al. 2022) in libtorch, laid out like timm's models/convnext.py: a block, a
// stage, the model, and the table of variants. Parameter names and shapes equal timm's state_dict, so
// weights move both ways through safetensors files.
#pragma once

#include <array>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace heimdall {

struct ConvNeXtVariant {
  std::string name;  // "convnext_atto" …
  std::array<int64_t, 4> depths;
  std::array<int64_t, 4> dims;
  bool conv_mlp;     // timm's atto … nano use 1×1 convolutions for the MLP, the others Linear in NHWC
};

const std::vector<ConvNeXtVariant>& convnext_variants();
// Accepts "convnext_tiny", "tiny", "CONVNEXT_TINY"; throws Error(kErrUnknownVariant) listing the valid names.
const ConvNeXtVariant& convnext_variant(const std::string& name);

struct ConvNeXtOptions {
  std::string variant = "convnext_atto";
  int64_t in_chans = 3;
  double drop_path_rate = 0.0;  // stochastic depth, linear over all blocks from 0 to this rate
  double ls_init_value = 1e-6;  // layer scale γ
};

// LayerNorm over the channel dimension of an NCHW tensor (timm's LayerNorm2d), eps 1e-6.
class LayerNorm2dImpl : public torch::nn::Module {
 public:
  explicit LayerNorm2dImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
};
TORCH_MODULE(LayerNorm2d);

// LayerNorm over the last dimension (used in NHWC), eps 1e-6.
class ChannelsLastNormImpl : public torch::nn::Module {
 public:
  explicit ChannelsLastNormImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
};
TORCH_MODULE(ChannelsLastNorm);

class ConvNeXtBlockImpl : public torch::nn::Module {
 public:
  ConvNeXtBlockImpl(int64_t dim, bool conv_mlp, double drop_path, double ls_init_value);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  bool conv_mlp_;
  double drop_path_;
  torch::nn::Conv2d conv_dw_{nullptr};
  LayerNorm2d norm2d_{nullptr};           // conv_mlp
  ChannelsLastNorm norm_nhwc_{nullptr};   // Linear MLP in NHWC
  torch::nn::Conv2d conv_fc1_{nullptr}, conv_fc2_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
  torch::Tensor gamma_;
};
TORCH_MODULE(ConvNeXtBlock);

class ConvNeXtStageImpl : public torch::nn::Module {
 public:
  ConvNeXtStageImpl(int64_t in_dim, int64_t out_dim, int64_t depth, bool downsample, bool conv_mlp,
                    const std::vector<double>& drop_path_rates, double ls_init_value);
  torch::Tensor forward(torch::Tensor x);

 private:
  torch::nn::Sequential downsample_{nullptr};
  torch::nn::Sequential blocks_{nullptr};
};
TORCH_MODULE(ConvNeXtStage);

// The backbone. forward() returns pooled, normalised features [B, num_features] (timm's forward_head
// with pre_logits=True); the classifier `head.fc` belongs to the heads in network.h.
class ConvNeXtImpl : public torch::nn::Module {
 public:
  explicit ConvNeXtImpl(const ConvNeXtOptions& options);
  torch::Tensor forward_features(const torch::Tensor& x);  // [B, C, H/32, W/32]
  torch::Tensor forward(const torch::Tensor& x);           // [B, num_features]
  int64_t num_features() const { return num_features_; }
  const ConvNeXtOptions& options() const { return options_; }
  const ConvNeXtVariant& variant() const { return variant_; }

 private:
  ConvNeXtOptions options_;
  ConvNeXtVariant variant_;
  int64_t num_features_;
  torch::nn::Sequential stem_{nullptr};
  torch::nn::ModuleList stages_{nullptr};
  LayerNorm2d head_norm_{nullptr};
};
TORCH_MODULE(ConvNeXt);

// timm's init: truncated normal (std 0.02, cut at ±2) for conv and linear weights, zero biases.
void trunc_normal_(torch::Tensor& t, double std, double a = -2.0, double b = 2.0);

}  // namespace heimdall
