#include "model/convnext/convnext.h"

#include <torch/torch.h>

namespace heimdall {

// ---- block -------------------------------------------------------------------------------------------

ConvNeXtBlockImpl::ConvNeXtBlockImpl(int64_t dim, bool conv_mlp, double drop_path_rate, double ls_init_value,
                                     const ConvNeXtDesign& design)
    : conv_mlp_(conv_mlp), drop_path_(drop_path_rate), mlp_norm_name_(design.mlp_norm_name) {
  conv_dw_ = register_module("conv_dw", Conv2d(dim, dim, 7, 1, 3, dim));
  norm_ = register_module("norm", LayerNorm(dim, /*channels_first=*/conv_mlp));
  auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>("Mlp"));
  fc1_ = mlp->register_module("fc1", Linear(dim, 4 * dim, conv_mlp));
  if (design.mlp_norm) mlp_norm_ = mlp->register_module(mlp_norm_name_, design.mlp_norm(4 * dim));
  fc2_ = mlp->register_module("fc2", Linear(4 * dim, dim, conv_mlp));
  if (design.layer_scale) gamma_ = register_parameter("gamma", torch::full({dim}, ls_init_value));
}

torch::Tensor ConvNeXtBlockImpl::forward(const torch::Tensor& x) {
  // Norm and MLP in NHWC for every variant, as timm computes its Linear-MLP variants: the conv_mlp ones (atto … nano)
  // keep timm's 1×1-convolution parameters and use them as the matrices they are (Linear), one GEMM with fused bias
  // over B·H·W rows instead of a 1×1 convolution between two permuted copies of the activations (~10 % of a
  // convnext_atto training step on CPU). On a channels_last input (the engine's default on CUDA) the permutes are
  // views: the block makes no layout copy at all.
  torch::Tensor y = norm_->forward_last(conv_dw_->forward(x).permute({0, 2, 3, 1}));
  y = at::gelu(fc1_->forward(y));
  if (mlp_norm_) y = mlp_norm_->forward_nhwc(y);
  y = fc2_->forward(y).permute({0, 3, 1, 2});
  const bool drop = is_training() && drop_path_ > 0;
  if (!gamma_.defined()) return drop ? drop_path(y, drop_path_, true) + x : x + y;
  if (drop) return drop_path(y.mul(gamma_.view({1, -1, 1, 1})), drop_path_, true) + x;
  return at::addcmul(x, y, gamma_.view({1, -1, 1, 1}));  // x + γ·y in one pass
}

std::string ConvNeXtBlockImpl::emit_onnx(GraphBuilder& g, const std::string& scope, const std::string& x) const {
  // conv_mlp variants stay NCHW (1×1 Conv MLP), the others go NHWC for the norm and MLP (MatMul + Add).
  const Layout layout = conv_mlp_ ? Layout::NCHW : Layout::NHWC;
  std::string y = conv_dw_->emit_onnx(g, scope + ".conv_dw", x);
  if (layout == Layout::NHWC) y = g.to_nhwc(scope, y);
  y = norm_->emit_onnx(g, scope + ".norm", y, layout);
  y = g.gelu(scope + ".mlp", fc1_->emit_onnx(g, scope + ".mlp.fc1", y, layout));
  if (mlp_norm_) y = mlp_norm_->emit_onnx(g, scope + ".mlp." + mlp_norm_name_, y, layout);
  y = fc2_->emit_onnx(g, scope + ".mlp.fc2", y, layout);
  if (gamma_.defined()) {
    const int64_t dim = gamma_.size(0);
    auto gamma = g.initializer(scope + ".gamma", g.weight(scope + ".gamma", gamma_),
                               layout == Layout::NCHW ? std::vector<int64_t>{dim, 1, 1} : std::vector<int64_t>{dim});
    y = g.add(scope, "Mul", {y, gamma});
  }
  if (layout == Layout::NHWC) y = g.to_nchw(scope, y);
  return g.add(scope, "Add", {y, x});
}

// ---- stage -------------------------------------------------------------------------------------------

ConvNeXtStageImpl::ConvNeXtStageImpl(int64_t in_dim, int64_t out_dim, int64_t depth, bool downsample, bool conv_mlp,
                                     const std::vector<double>& drop_path_rates, double ls_init_value,
                                     const ConvNeXtDesign& design) {
  if (downsample) {
    auto ds = register_module("downsample", std::make_shared<torch::nn::Module>("Sequential"));
    down_norm_ = ds->register_module("0", LayerNorm(in_dim, /*channels_first=*/true));
    down_conv_ = ds->register_module("1", Conv2d(in_dim, out_dim, 2, 2));
  }
  auto blocks = register_module("blocks", std::make_shared<torch::nn::Module>("Sequential"));
  for (int64_t i = 0; i < depth; ++i)
    blocks_.push_back(blocks->register_module(
        std::to_string(i), ConvNeXtBlock(out_dim, conv_mlp, drop_path_rates[i], ls_init_value, design)));
}

torch::Tensor ConvNeXtStageImpl::forward(torch::Tensor x) {
  if (down_conv_) x = down_conv_->forward(down_norm_->forward(x));
  for (auto& b : blocks_) x = b->forward(x);
  return x;
}

std::string ConvNeXtStageImpl::emit_onnx(GraphBuilder& g, const std::string& scope, const std::string& x) const {
  std::string y = x;
  if (down_conv_) {
    y = down_norm_->emit_onnx(g, scope + ".downsample.0", y, Layout::NCHW);
    y = down_conv_->emit_onnx(g, scope + ".downsample.1", y);
  }
  for (size_t i = 0; i < blocks_.size(); ++i) y = blocks_[i]->emit_onnx(g, scope + ".blocks." + std::to_string(i), y);
  return y;
}

// ---- model -------------------------------------------------------------------------------------------

ConvNeXtImpl::ConvNeXtImpl(const ConvNeXtVariant& v, const VariantInfo& info, const BackboneOptions& options,
                           const ConvNeXtDesign& design)
    : Backbone(info, options, design.title, 32) {
  const auto& dims = v.dims;
  auto stem = register_module("stem", std::make_shared<torch::nn::Module>("Sequential"));
  stem_conv_ = stem->register_module("0", Conv2d(options.in_chans, dims[0], 4, 4));
  stem_norm_ = stem->register_module("1", LayerNorm(dims[0], /*channels_first=*/true));

  int64_t total = 0;
  for (auto d : v.depths) total += d;
  std::vector<double> rates(total);
  for (int64_t i = 0; i < total; ++i) rates[i] = total > 1 ? options.drop_path_rate * i / (total - 1) : 0.0;

  auto stages = register_module("stages", std::make_shared<torch::nn::Module>("Sequential"));
  int64_t first = 0;
  for (int s = 0; s < 4; ++s) {
    std::vector<double> stage_rates(rates.begin() + first, rates.begin() + first + v.depths[s]);
    first += v.depths[s];
    stages_.push_back(stages->register_module(
        std::to_string(s), ConvNeXtStage(s == 0 ? dims[0] : dims[s - 1], dims[s], v.depths[s], s > 0, v.conv_mlp,
                                         stage_rates, options.ls_init_value, design)));
  }
  num_features_ = dims[3];
  auto head = register_module("head", std::make_shared<torch::nn::Module>("Head"));
  head_norm_ = head->register_module("norm", LayerNorm(num_features_, /*channels_first=*/true));
}

void ConvNeXtImpl::init_weights() { init_conv_linear_(*this, 0.02); }

torch::Tensor ConvNeXtImpl::forward_features(const torch::Tensor& x) {
  check_input(x.sizes());
  auto y = stem_norm_->forward(stem_conv_->forward(x));
  for (auto& stage : stages_) y = stage->forward(y);
  return y;
}

torch::Tensor ConvNeXtImpl::forward(const torch::Tensor& x) {
  // Mean over H, W, then LayerNorm over C: timm's LayerNorm2d on [B, C, 1, 1] + flatten.
  return head_norm_->forward_last(forward_features(x).mean({2, 3}));
}

std::string ConvNeXtImpl::emit_onnx(GraphBuilder& g, const std::string& x) const {
  std::string y = stem_conv_->emit_onnx(g, "stem.0", x);
  y = stem_norm_->emit_onnx(g, "stem.1", y, Layout::NCHW);
  for (size_t s = 0; s < stages_.size(); ++s) y = stages_[s]->emit_onnx(g, "stages." + std::to_string(s), y);
  y = g.reduce("head.global_pool", "ReduceMean", y, {2, 3}, /*keepdims=*/false);
  return head_norm_->emit_onnx(g, "head.norm", y, Layout::Flat);
}

// ---- the family --------------------------------------------------------------------------------------

ModelFamily convnext_like_family(std::vector<ConvNeXtVariant> variants, ConvNeXtDesign design) {
  ModelFamily f;
  f.name = design.family;
  f.title = design.title;
  for (const auto& v : variants)
    f.variants.push_back({design.family, v.name, {v.depths.begin(), v.depths.end()}, {v.dims.begin(), v.dims.end()}});
  f.create = [variants = std::move(variants), design = std::move(design)](const VariantInfo& info,
                                                                          const BackboneOptions& options) {
    const auto& v = *std::find_if(variants.begin(), variants.end(), [&](const auto& row) { return row.name == info.name; });
    return std::shared_ptr<Backbone>(std::make_shared<ConvNeXtImpl>(v, info, options, design));
  };
  return f;
}

ModelFamily convnext_family() {
  return convnext_like_family(
      {
          {"convnext_atto", {2, 2, 6, 2}, {40, 80, 160, 320}, true},
          {"convnext_femto", {2, 2, 6, 2}, {48, 96, 192, 384}, true},
          {"convnext_pico", {2, 2, 6, 2}, {64, 128, 256, 512}, true},
          {"convnext_nano", {2, 2, 8, 2}, {80, 160, 320, 640}, true},
          {"convnext_tiny", {3, 3, 9, 3}, {96, 192, 384, 768}, false},
          {"convnext_small", {3, 3, 27, 3}, {96, 192, 384, 768}, false},
          {"convnext_base", {3, 3, 27, 3}, {128, 256, 512, 1024}, false},
          {"convnext_large", {3, 3, 27, 3}, {192, 384, 768, 1536}, false},
          {"convnext_xlarge", {3, 3, 27, 3}, {256, 512, 1024, 2048}, false},
      },
      ConvNeXtDesign{});
}

}  // namespace heimdall
