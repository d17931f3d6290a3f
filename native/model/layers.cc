#include "model/layers.h"

#include <cmath>

#include <torch/torch.h>

#include "errors.h"

namespace heimdall {

using onnx::Attribute;

// ---- Conv2d ------------------------------------------------------------------------------------------------

Conv2dImpl::Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, int64_t groups)
    : stride_(stride), padding_(padding), groups_(groups) {
  weight = register_parameter("weight", torch::empty({out, in / groups, kernel, kernel}));
  bias = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor Conv2dImpl::forward(const torch::Tensor& x) {
  return at::conv2d(x, weight, bias, stride_, padding_, /*dilation=*/1, groups_);
}

std::string Conv2dImpl::emit_onnx(GraphBuilder& g, const std::string& scope, const std::string& x) const {
  const int64_t k = weight.size(2);
  auto w = g.param(scope + ".weight", weight);
  auto b = g.param(scope + ".bias", bias);
  return g.add(scope, "Conv", {x, w, b},
               {Attribute::of_ints("kernel_shape", {k, k}), Attribute::of_ints("strides", {stride_, stride_}),
                Attribute::of_ints("pads", {padding_, padding_, padding_, padding_}), Attribute::of_int("group", groups_)});
}

// ---- Linear ------------------------------------------------------------------------------------------------

LinearImpl::LinearImpl(int64_t in, int64_t out, bool conv_shaped) : conv_shaped_(conv_shaped), in_(in), out_(out) {
  weight = register_parameter("weight", conv_shaped ? torch::empty({out, in, 1, 1}) : torch::empty({out, in}));
  bias = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  // A conv-shaped weight is the [out, in] matrix it holds: one GEMM over B·H·W rows instead of a 1×1
  // convolution between two permuted copies of the activations.
  return at::linear(x, conv_shaped_ ? weight.flatten(1) : weight, bias);
}

std::string gemm_onnx(GraphBuilder& g, const std::string& scope, const std::string& x, const torch::Tensor& weight,
                      const torch::Tensor& bias, const std::string& output_name) {
  auto w = g.param(scope + ".weight", weight);
  auto b = g.param(scope + ".bias", bias);
  std::vector<Attribute> attrs = {Attribute::of_int("transB", 1)};
  if (output_name.empty()) return g.add(scope, "Gemm", {x, w, b}, attrs);
  g.add_named(scope, "Gemm", {x, w, b}, output_name, attrs);
  return output_name;
}

std::string LinearImpl::emit_onnx(GraphBuilder& g, const std::string& scope, const std::string& x, Layout layout,
                                  const std::string& output_name) const {
  if (layout == Layout::Flat) return gemm_onnx(g, scope, x, weight, bias, output_name);
  if (layout == Layout::NCHW) {
    if (!conv_shaped_) throw Error(kErrInvalidArgument, scope + ": a Linear layer takes NHWC or [B, C] input, not NCHW");
    auto w = g.param(scope + ".weight", weight);
    auto b = g.param(scope + ".bias", bias);
    return g.add(scope, "Conv", {x, w, b},
                 {Attribute::of_ints("kernel_shape", {1, 1}), Attribute::of_ints("strides", {1, 1}),
                  Attribute::of_ints("pads", {0, 0, 0, 0}), Attribute::of_int("group", 1)});
  }
  // NHWC: MatMul with Wᵀ, then Add.
  at::Tensor wt = g.weight(scope + ".weight", weight).reshape({out_, in_}).t().contiguous();
  auto w = g.initializer(scope + ".weight.T", wt, {in_, out_});
  auto b = g.param(scope + ".bias", bias);
  return g.add(scope, "Add", {g.add(scope, "MatMul", {x, w}), b});
}

// ---- LayerNorm ---------------------------------------------------------------------------------------------

LayerNormImpl::LayerNormImpl(int64_t channels, bool channels_first, double eps)
    : channels_first_(channels_first), eps_(eps) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
}

torch::Tensor LayerNormImpl::forward_last(const torch::Tensor& x) {
  return at::layer_norm(x, {weight.size(0)}, weight, bias, eps_);
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  if (!channels_first_) return forward_last(x);
  return forward_last(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
}

std::string LayerNormImpl::emit_onnx(GraphBuilder& g, const std::string& scope, const std::string& x, Layout layout) const {
  auto norm = [&](const std::string& in) {
    auto scale = g.param(scope + ".weight", weight);
    auto b = g.param(scope + ".bias", bias);
    return g.add(scope, "LayerNormalization", {in, scale, b},
                 {Attribute::of_int("axis", -1), Attribute::of_float("epsilon", static_cast<float>(eps_))});
  };
  if (layout != Layout::NCHW) return norm(x);  // NHWC, or [B, C]
  return g.to_nchw(scope, norm(g.to_nhwc(scope, x)));
}

// ---- functions and init ------------------------------------------------------------------------------------

torch::Tensor drop_path(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0.0) return x;
  const double keep = 1.0 - p;
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  auto mask = torch::empty(shape, x.options()).bernoulli_(keep);
  return x * mask.div_(keep);
}

void trunc_normal_(torch::Tensor& t, double std, double a, double b) {
  torch::NoGradGuard no_grad;
  auto cdf = [](double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; };
  double l = cdf(a / std), u = cdf(b / std);
  t.uniform_(2 * l - 1, 2 * u - 1).erfinv_().mul_(std * std::sqrt(2.0)).clamp_(a, b);
}

void init_conv_linear_(torch::nn::Module& root, double std) {
  torch::NoGradGuard no_grad;
  for (const auto& m : root.modules(/*include_self=*/true)) {
    torch::Tensor *w = nullptr, *b = nullptr;
    if (auto* c = m->as<Conv2dImpl>()) {
      w = &c->weight;
      b = &c->bias;
    } else if (auto* l = m->as<LinearImpl>()) {
      w = &l->weight;
      b = &l->bias;
    } else {
      continue;
    }
    trunc_normal_(*w, std);
    b->zero_();
  }
}

}  // namespace heimdall
