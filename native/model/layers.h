// The layer types the model families are built from. Each one is a libtorch module with timm's parameter names
// (weight, bias) that knows its forward and the ONNX nodes of that forward (emit_onnx), so a family describes its
// network once and gets both. Weight initialisation goes by layer type, as timm's _init_weights does.
//
//   Conv2d       nn.Conv2d (NCHW)                                     → Conv
//   Linear       nn.Linear on the last axis, or a 1×1 nn.Conv2d used  → Gemm ([B, C]) / MatMul + Add (NHWC) /
//                as one (timm's conv_mlp: weight [out, in, 1, 1])       Conv 1×1 (NCHW, conv-shaped)
//   LayerNorm    over the channels: channels-last (nn.LayerNorm) or   → LayerNormalization (axis -1), NCHW
//                channels-first (timm's LayerNorm2d), ε 1e-6            between two Transposes
//   GELU, drop path: functions (no parameters)
#pragma once

#include <string>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "onnx/graph_builder.h"

namespace heimdall {

using onnx::GraphBuilder;

// Where the channels of an activation are: NCHW (PyTorch's default), NHWC (the fast path of the MLPs), or the
// only axis after the batch (pooled features [B, C]).
enum class Layout { NCHW, NHWC, Flat };

class Conv2dImpl : public torch::nn::Module {
 public:
  Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0, int64_t groups = 1);
  torch::Tensor forward(const torch::Tensor& x);
  std::string emit_onnx(GraphBuilder& g, const std::string& scope, const std::string& x) const;
  torch::Tensor weight, bias;

 private:
  int64_t stride_, padding_, groups_;
};
TORCH_MODULE(Conv2d);

class LinearImpl : public torch::nn::Module {
 public:
  // conv_shaped: the parameters of a 1×1 convolution ([out, in, 1, 1]), timm's conv_mlp layout.
  LinearImpl(int64_t in, int64_t out, bool conv_shaped = false);
  // Over the last axis (NHWC activations, or [B, in]): one GEMM with fused bias.
  torch::Tensor forward(const torch::Tensor& x);
  // Flat [B, in] → Gemm (named `output_name` when given); NHWC → MatMul + Add; NCHW (conv-shaped only) → 1×1 Conv.
  std::string emit_onnx(GraphBuilder& g, const std::string& scope, const std::string& x, Layout layout,
                        const std::string& output_name = "") const;
  bool conv_shaped() const { return conv_shaped_; }
  torch::Tensor weight, bias;

 private:
  bool conv_shaped_;
  int64_t in_, out_;
};
TORCH_MODULE(Linear);

class LayerNormImpl : public torch::nn::Module {
 public:
  // channels_first: timm's LayerNorm2d (normalises dim 1 of NCHW); else nn.LayerNorm over the last axis.
  LayerNormImpl(int64_t channels, bool channels_first, double eps = 1e-6);
  torch::Tensor forward(const torch::Tensor& x);       // in its own layout
  torch::Tensor forward_last(const torch::Tensor& x);  // over the last axis, whatever the layout it was made for
  std::string emit_onnx(GraphBuilder& g, const std::string& scope, const std::string& x, Layout layout) const;
  torch::Tensor weight, bias;

 private:
  bool channels_first_;
  double eps_;
};
TORCH_MODULE(LayerNorm);

// nn.Linear on [B, in] as Gemm(x, W, b, transB) from the state-dict tensors `scope`.weight / .bias shaped like
// `weight` / `bias`; the output gets `output_name` when given (a graph output).
std::string gemm_onnx(GraphBuilder& g, const std::string& scope, const std::string& x, const torch::Tensor& weight,
                      const torch::Tensor& bias, const std::string& output_name = "");

// Stochastic depth: drops whole samples with probability p in training, scaling the kept ones by 1/(1-p).
torch::Tensor drop_path(const torch::Tensor& x, double p, bool training);

// Truncated normal as torch.nn.init.trunc_normal_ (inverse-CDF sampling), cut at [a, b].
void trunc_normal_(torch::Tensor& t, double std, double a = -2.0, double b = 2.0);

// timm's _init_weights for ConvNeXt-like families, by layer type: Conv2d and Linear weights trunc_normal(std),
// their biases zero; other layers keep what their constructor gave (LayerNorm 1/0).
void init_conv_linear_(torch::nn::Module& root, double std = 0.02);

}  // namespace heimdall
