// ConvNeXt V2 (Woo et al. 2023; timm's convnextv2_*): the ConvNeXt skeleton (native/model/convnext/) with Global
// Response Normalization between the MLP's GELU and fc2 and no layer scale. atto … nano keep timm's conv_mlp layout
// (1×1-convolution weights, GRN over NCHW), tiny … huge the Linear one (GRN over NHWC); the parameters are the same.
#pragma once

#include "model/convnext/convnext.h"

namespace heimdall {

// GRN: x + β + γ·(x · N(x)), N(x) = ‖x‖₂ over H, W divided by its mean over the channels (+ ε 1e-6). timm's
// GlobalResponseNorm: weight γ and bias β, both initialised to zero (the layer starts as the identity).
class GlobalResponseNormImpl : public MlpNormImpl {
 public:
  explicit GlobalResponseNormImpl(int64_t channels, double eps = 1e-6);
  torch::Tensor forward_nhwc(const torch::Tensor& x) override;
  std::string emit_onnx(GraphBuilder& g, const std::string& scope, const std::string& x, Layout layout) const override;
  torch::Tensor weight, bias;

 private:
  double eps_;
};

// ConvNeXt V2: atto … huge.
ModelFamily convnextv2_family();

}  // namespace heimdall
