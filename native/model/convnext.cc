#include "model/convnext.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include <torch/torch.h>

#include "errors.h"

namespace heimdall {

namespace F = torch::nn::functional;

const std::vector<ConvNeXtVariant>& convnext_variants() {
  static const std::vector<ConvNeXtVariant> table = {
      {"convnext_atto", {2, 2, 6, 2}, {40, 80, 160, 320}, true},
      {"convnext_femto", {2, 2, 6, 2}, {48, 96, 192, 384}, true},
      {"convnext_pico", {2, 2, 6, 2}, {64, 128, 256, 512}, true},
      {"convnext_nano", {2, 2, 8, 2}, {80, 160, 320, 640}, true},
      {"convnext_tiny", {3, 3, 9, 3}, {96, 192, 384, 768}, false},
      {"convnext_small", {3, 3, 27, 3}, {96, 192, 384, 768}, false},
      {"convnext_base", {3, 3, 27, 3}, {128, 256, 512, 1024}, false},
      {"convnext_large", {3, 3, 27, 3}, {192, 384, 768, 1536}, false},
      {"convnext_xlarge", {3, 3, 27, 3}, {256, 512, 1024, 2048}, false},
  };
  return table;
}

const ConvNeXtVariant& convnext_variant(const std::string& name) {
  std::string key = name;
  std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
  if (key.rfind("convnext_", 0) != 0) key = "convnext_" + key;
  for (const auto& v : convnext_variants())
    if (v.name == key) return v;
  std::string valid;
  for (const auto& v : convnext_variants()) valid += (valid.empty() ? "" : ", ") + v.name;
  throw Error(kErrUnknownVariant, "unknown ConvNeXt variant \"" + name + "\"; valid variants: " + valid);
}

void trunc_normal_(torch::Tensor& t, double std, double a, double b) {
  torch::NoGradGuard no_grad;
  // Inverse-CDF sampling, as torch.nn.init.trunc_normal_ does.
  auto cdf = [](double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; };
  double l = cdf(a / std), u = cdf(b / std);
  t.uniform_(2 * l - 1, 2 * u - 1).erfinv_().mul_(std * std::sqrt(2.0)).clamp_(a, b);
}

// ---- norms -------------------------------------------------------------------------------------------

LayerNorm2dImpl::LayerNorm2dImpl(int64_t channels) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
}

torch::Tensor LayerNorm2dImpl::forward(const torch::Tensor& x) {
  auto y = x.permute({0, 2, 3, 1});
  y = at::layer_norm(y, {weight.size(0)}, weight, bias, 1e-6);
  return y.permute({0, 3, 1, 2});
}

ChannelsLastNormImpl::ChannelsLastNormImpl(int64_t channels) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
}

torch::Tensor ChannelsLastNormImpl::forward(const torch::Tensor& x) {
  return at::layer_norm(x, {weight.size(0)}, weight, bias, 1e-6);
}

// ---- block -------------------------------------------------------------------------------------------

namespace {
torch::Tensor drop_path(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0.0) return x;
  const double keep = 1.0 - p;
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  auto mask = torch::empty(shape, x.options()).bernoulli_(keep);
  return x * mask.div_(keep);
}
}  // namespace

ConvNeXtBlockImpl::ConvNeXtBlockImpl(int64_t dim, bool conv_mlp, double drop_path_rate, double ls_init_value)
    : conv_mlp_(conv_mlp), drop_path_(drop_path_rate) {
  conv_dw_ = register_module(
      "conv_dw", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, 7).padding(3).groups(dim)));
  if (conv_mlp) {
    norm2d_ = register_module("norm", LayerNorm2d(dim));
  } else {
    norm_nhwc_ = register_module("norm", ChannelsLastNorm(dim));
  }
  auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>("Mlp"));
  if (conv_mlp) {
    conv_fc1_ = mlp->register_module("fc1", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, 4 * dim, 1)));
    conv_fc2_ = mlp->register_module("fc2", torch::nn::Conv2d(torch::nn::Conv2dOptions(4 * dim, dim, 1)));
  } else {
    fc1_ = mlp->register_module("fc1", torch::nn::Linear(dim, 4 * dim));
    fc2_ = mlp->register_module("fc2", torch::nn::Linear(4 * dim, dim));
  }
  gamma_ = register_parameter("gamma", torch::full({dim}, ls_init_value));
}

torch::Tensor ConvNeXtBlockImpl::forward(const torch::Tensor& x) {
  // Norm and MLP in NHWC, as timm computes its Linear-MLP variants. The conv_mlp variants (atto … nano) keep
  // timm's 1×1-convolution parameters ([4C, C, 1, 1], same names) and use them as the [4C, C] matrices they
  // are: one GEMM with fused bias over B·H·W rows instead of a 1×1 convolution between two permuted copies
  // of the activations (~10 % of a convnext_atto training step on CPU). On a channels_last input (the
  // engine's default on CUDA) the permutes below are views: the block makes no layout copy at all.
  const torch::Tensor& norm_w = conv_mlp_ ? norm2d_->weight : norm_nhwc_->weight;
  const torch::Tensor& norm_b = conv_mlp_ ? norm2d_->bias : norm_nhwc_->bias;
  const torch::Tensor w1 = conv_mlp_ ? conv_fc1_->weight.flatten(1) : fc1_->weight;
  const torch::Tensor& b1 = conv_mlp_ ? conv_fc1_->bias : fc1_->bias;
  const torch::Tensor w2 = conv_mlp_ ? conv_fc2_->weight.flatten(1) : fc2_->weight;
  const torch::Tensor& b2 = conv_mlp_ ? conv_fc2_->bias : fc2_->bias;
  torch::Tensor y = conv_dw_->forward(x).permute({0, 2, 3, 1});
  y = at::layer_norm(y, {norm_w.size(0)}, norm_w, norm_b, 1e-6);
  y = at::linear(at::gelu(at::linear(y, w1, b1)), w2, b2);
  y = y.permute({0, 3, 1, 2});
  if (is_training() && drop_path_ > 0) return drop_path(y.mul(gamma_.view({1, -1, 1, 1})), drop_path_, true) + x;
  return at::addcmul(x, y, gamma_.view({1, -1, 1, 1}));  // x + γ·y in one pass
}

// ---- stage -------------------------------------------------------------------------------------------

ConvNeXtStageImpl::ConvNeXtStageImpl(int64_t in_dim, int64_t out_dim, int64_t depth, bool downsample, bool conv_mlp,
                                     const std::vector<double>& drop_path_rates, double ls_init_value) {
  if (downsample) {
    downsample_ = register_module(
        "downsample", torch::nn::Sequential(LayerNorm2d(in_dim),
                                            torch::nn::Conv2d(torch::nn::Conv2dOptions(in_dim, out_dim, 2).stride(2))));
  }
  blocks_ = register_module("blocks", torch::nn::Sequential());
  for (int64_t i = 0; i < depth; ++i) blocks_->push_back(ConvNeXtBlock(out_dim, conv_mlp, drop_path_rates[i], ls_init_value));
}

torch::Tensor ConvNeXtStageImpl::forward(torch::Tensor x) {
  if (downsample_) x = downsample_->forward(x);
  return blocks_->forward(x);
}

// ---- model -------------------------------------------------------------------------------------------

ConvNeXtImpl::ConvNeXtImpl(const ConvNeXtOptions& options)
    : options_(options), variant_(convnext_variant(options.variant)) {
  options_.variant = variant_.name;
  if (options.in_chans < 1) throw Error(kErrInvalidArgument, "inChans must be ≥ 1, got " + std::to_string(options.in_chans));
  if (options.drop_path_rate < 0 || options.drop_path_rate >= 1)
    throw Error(kErrInvalidArgument, "dropPathRate must be in [0, 1), got " + std::to_string(options.drop_path_rate));
  const auto& dims = variant_.dims;
  stem_ = register_module("stem", torch::nn::Sequential(
                                      torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_chans, dims[0], 4).stride(4)),
                                      LayerNorm2d(dims[0])));
  int64_t total = 0;
  for (auto d : variant_.depths) total += d;
  std::vector<double> rates(total);
  for (int64_t i = 0; i < total; ++i) rates[i] = total > 1 ? options.drop_path_rate * i / (total - 1) : 0.0;

  stages_ = register_module("stages", torch::nn::ModuleList());
  int64_t first = 0;
  for (int s = 0; s < 4; ++s) {
    std::vector<double> stage_rates(rates.begin() + first, rates.begin() + first + variant_.depths[s]);
    first += variant_.depths[s];
    stages_->push_back(ConvNeXtStage(s == 0 ? dims[0] : dims[s - 1], dims[s], variant_.depths[s], s > 0,
                                     variant_.conv_mlp, stage_rates, options.ls_init_value));
  }
  num_features_ = dims[3];
  auto head = register_module("head", std::make_shared<torch::nn::Module>("Head"));
  head_norm_ = head->register_module("norm", LayerNorm2d(num_features_));

  // timm's _init_weights
  for (auto& item : named_parameters()) {
    const std::string& key = item.key();
    auto& p = item.value();
    bool is_weight = key.size() >= 7 && key.compare(key.size() - 7, 7, ".weight") == 0;
    bool is_bias = key.size() >= 5 && key.compare(key.size() - 5, 5, ".bias") == 0;
    if (p.dim() >= 2 && is_weight) {
      trunc_normal_(p, 0.02);
    } else if (is_bias && key.find("norm") == std::string::npos && key.find("stem.1") == std::string::npos &&
               key.find("downsample.0") == std::string::npos) {
      torch::NoGradGuard g;
      p.zero_();
    }
  }
}

torch::Tensor ConvNeXtImpl::forward_features(const torch::Tensor& x) {
  if (x.dim() != 4 || x.size(1) != options_.in_chans) {
    throw Error(kErrShape, "ConvNeXt expects input of shape [batch, " + std::to_string(options_.in_chans) +
                               ", height, width], got " + c10::str(x.sizes()));
  }
  if (x.size(2) < 32 || x.size(3) < 32) {
    throw Error(kErrShape, "ConvNeXt downsamples by 32: input height and width must be ≥ 32, got " + c10::str(x.sizes()));
  }
  auto y = stem_->forward(x);
  for (const auto& stage : *stages_) y = stage->as<ConvNeXtStage>()->forward(y);
  return y;
}

torch::Tensor ConvNeXtImpl::forward(const torch::Tensor& x) {
  auto y = forward_features(x).mean({2, 3}, /*keepdim=*/true);
  return head_norm_->forward(y).flatten(1);
}

}  // namespace heimdall
