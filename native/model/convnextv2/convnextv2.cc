#include "model/convnextv2/convnextv2.h"

#include <torch/torch.h>

namespace heimdall {

GlobalResponseNormImpl::GlobalResponseNormImpl(int64_t channels, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::zeros({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
}

torch::Tensor GlobalResponseNormImpl::forward_nhwc(const torch::Tensor& x) {
  auto gx = at::linalg_vector_norm(x, 2, {1, 2}, /*keepdim=*/true);  // [B, 1, 1, C]
  auto nx = gx / (gx.mean(-1, /*keepdim=*/true) + eps_);
  // x + β + γ·x·N(x) = x·(1 + γ·N(x)) + β: the per-channel factor is [B, 1, 1, C], so one pass over x.
  return at::addcmul(bias, x, nx.mul(weight).add_(1.0));
}

std::string GlobalResponseNormImpl::emit_onnx(GraphBuilder& g, const std::string& scope, const std::string& x,
                                              Layout layout) const {
  const bool nchw = layout == Layout::NCHW;
  const int64_t c = weight.size(0);
  const std::vector<int64_t> dims = nchw ? std::vector<int64_t>{c, 1, 1} : std::vector<int64_t>{c};
  auto gx = g.reduce(scope, "ReduceL2", x, nchw ? std::vector<int64_t>{2, 3} : std::vector<int64_t>{1, 2}, true);
  auto mean = g.reduce(scope, "ReduceMean", gx, {nchw ? 1 : 3}, true);
  auto nx = g.add(scope, "Div", {gx, g.add(scope, "Add", {mean, g.scalar(static_cast<float>(eps_))})});
  auto w = g.initializer(scope + ".weight", g.weight(scope + ".weight", weight), dims);
  auto b = g.initializer(scope + ".bias", g.weight(scope + ".bias", bias), dims);
  auto scaled = g.add(scope, "Mul", {g.add(scope, "Mul", {x, nx}), w});
  return g.add(scope, "Add", {g.add(scope, "Add", {scaled, b}), x});
}

ModelFamily convnextv2_family() {
  ConvNeXtDesign design;
  design.family = "convnextv2";
  design.title = "ConvNeXt V2";
  design.layer_scale = false;
  design.mlp_norm_name = "grn";
  design.mlp_norm = [](int64_t hidden) { return std::make_shared<GlobalResponseNormImpl>(hidden); };
  return convnext_like_family(
      {
          {"convnextv2_atto", {2, 2, 6, 2}, {40, 80, 160, 320}, true},
          {"convnextv2_femto", {2, 2, 6, 2}, {48, 96, 192, 384}, true},
          {"convnextv2_pico", {2, 2, 6, 2}, {64, 128, 256, 512}, true},
          {"convnextv2_nano", {2, 2, 8, 2}, {80, 160, 320, 640}, true},
          {"convnextv2_tiny", {3, 3, 9, 3}, {96, 192, 384, 768}, false},
          {"convnextv2_small", {3, 3, 27, 3}, {96, 192, 384, 768}, false},
          {"convnextv2_base", {3, 3, 27, 3}, {128, 256, 512, 1024}, false},
          {"convnextv2_large", {3, 3, 27, 3}, {192, 384, 768, 1536}, false},
          {"convnextv2_huge", {3, 3, 27, 3}, {352, 704, 1408, 2816}, false},
      },
      std::move(design));
}

}  // namespace heimdall
