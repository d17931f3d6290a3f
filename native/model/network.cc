#include "model/network.h"

#include <algorithm>
#include <cctype>

#include <torch/torch.h>

#include "errors.h"
#include "model/registry.h"

namespace heimdall {

HeadKind parse_head_kind(const std::string& name) {
  std::string k = name;
  std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return std::tolower(c); });
  if (k == "localization") return HeadKind::Localization;
  if (k == "classification") return HeadKind::Classification;
  if (k == "regression") return HeadKind::Regression;
  throw Error(kErrInvalidArgument, "unknown head \"" + name + "\"; valid heads: localization, classification, regression");
}

const char* head_kind_name(HeadKind kind) {
  switch (kind) {
    case HeadKind::Localization: return "localization";
    case HeadKind::Classification: return "classification";
    case HeadKind::Regression: return "regression";
  }
  return "?";
}

namespace {
torch::nn::Sequential localization_mlp(int64_t in, const HeadOptions& h) {
  torch::nn::Sequential seq;
  int64_t width = in;
  for (size_t i = 0; i < h.hidden.size(); ++i) {
    seq->push_back(torch::nn::Linear(width, h.hidden[i]));
    seq->push_back(torch::nn::BatchNorm1d(h.hidden[i]));
    seq->push_back(torch::nn::ReLU());
    seq->push_back(torch::nn::Dropout(i < h.dropout.size() ? h.dropout[i] : 0.0));
    width = h.hidden[i];
  }
  seq->push_back(torch::nn::Linear(width, 2));
  return seq;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

NetworkImpl::NetworkImpl(const NetworkOptions& options) : options_(options) {
  backbone_ = create_backbone(options.backbone);
  if (options.init_weights) backbone_->init_weights();
  // Register the backbone's children at the top level so names are timm's (stem.*, stages.*, head.norm.*).
  for (const auto& child : backbone_->named_children()) register_module(child.key(), child.value());
  const int64_t features = backbone_->num_features();
  const auto& h = options.head;
  if (h.kind == HeadKind::Localization) {
    if (h.sigma_min <= 0 || h.sigma_max <= h.sigma_min)
      throw Error(kErrInvalidArgument, "uncertainty clamp must satisfy 0 < sigmaMin < sigmaMax");
    position_head_ = register_module("position_head", localization_mlp(features, h));
    uncertainty_head_ = register_module("uncertainty_head", localization_mlp(features, h));
  } else {
    if (h.outputs < 1) throw Error(kErrInvalidArgument, "head outputs must be ≥ 1, got " + std::to_string(h.outputs));
    // timm's classifier path (ConvNeXt: head.fc) under the backbone's module of that name, so timm classifiers load.
    const std::string path = backbone_->classifier_path();
    const auto dot = path.rfind('.');
    std::shared_ptr<torch::nn::Module> parent = backbone_;
    if (dot != std::string::npos) parent = backbone_->named_modules("", false)[path.substr(0, dot)];
    fc_ = parent->register_module(path.substr(dot == std::string::npos ? 0 : dot + 1), Linear(features, h.outputs));
    if (dot == std::string::npos) register_module(path, fc_);
    if (options.init_weights) init_conv_linear_(*fc_, 0.02);
  }
  options_.backbone = backbone_->options();
  if (options.freeze_backbone) set_backbone_frozen(true);
}

std::vector<torch::Tensor> NetworkImpl::forward(const torch::Tensor& x) {
  auto features = backbone_->forward(x);
  if (options_.head.kind == HeadKind::Localization) {
    auto positions = run_head(position_head_, features);
    auto sigma = torch::softplus(run_head(uncertainty_head_, features)).clamp(options_.head.sigma_min, options_.head.sigma_max);
    return {positions, sigma};
  }
  return {fc_->forward(features)};
}

namespace {
// BatchNorm1d over [B, C] with the batch statistics of every rank (SyncBatchNorm): sums, sums of squares and counts
// in float64 go through `reduce` (a differentiable all-reduce: its backward sums the gradients of all ranks, so the
// parameter gradients equal those of one process on the union of the batches).
torch::Tensor sync_batch_norm(const torch::Tensor& x, torch::nn::BatchNorm1dImpl& bn, const NetworkImpl::BatchStatsReducer& reduce) {
  const int64_t c = x.size(1);
  auto xd = x.to(torch::kDouble);
  auto stats = reduce(torch::cat({xd.sum(0), (xd * xd).sum(0), torch::full({1}, static_cast<double>(x.size(0)), xd.options())}));
  auto n = stats.narrow(0, 2 * c, 1);
  auto mean = stats.narrow(0, 0, c) / n;
  auto var = stats.narrow(0, c, c) / n - mean * mean;  // biased, as BatchNorm normalises
  const auto& o = bn.options;
  auto y = (xd - mean) / torch::sqrt(var + o.eps());
  if (o.affine()) y = y * bn.weight.to(torch::kDouble) + bn.bias.to(torch::kDouble);
  if (o.track_running_stats()) {
    torch::NoGradGuard g;
    const double count = n.item<double>();
    bn.num_batches_tracked.add_(1);
    const double m = o.momentum().has_value() ? *o.momentum() : 1.0 / bn.num_batches_tracked.item<double>();
    bn.running_mean.mul_(1 - m).add_(mean.to(bn.running_mean.scalar_type()), m);
    bn.running_var.mul_(1 - m).add_((var * (count / std::max(1.0, count - 1))).to(bn.running_var.scalar_type()), m);
  }
  return y.to(x.scalar_type());
}
}  // namespace

torch::Tensor NetworkImpl::run_head(torch::nn::Sequential& head, torch::Tensor x) {
  if (!reducer_ || !is_training()) return head->forward(x);
  for (auto& layer : *head) {
    auto* bn = layer.ptr()->as<torch::nn::BatchNorm1dImpl>();
    x = bn && bn->is_training() ? sync_batch_norm(x, *bn, reducer_) : layer.forward(x);
  }
  return x;
}

std::vector<std::string> NetworkImpl::output_names() const {
  switch (options_.head.kind) {
    case HeadKind::Localization: return {"positions", "uncertainties"};
    case HeadKind::Classification: return {"logits"};
    case HeadKind::Regression: return {"outputs"};
  }
  return {};
}

namespace {
// localization_mlp as ONNX: [Linear → BatchNorm1d → ReLU → Dropout (identity)] × hidden, Linear → 2.
std::string localization_mlp_onnx(onnx::GraphBuilder& g, const std::string& scope, const std::string& x,
                                  const torch::nn::Sequential& mlp, const std::string& output_name) {
  std::string y = x;
  const auto layers = mlp->children();
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string at = scope + "." + std::to_string(i);
    if (auto* lin = layers[i]->as<torch::nn::LinearImpl>()) {
      y = gemm_onnx(g, at, y, lin->weight, lin->bias, i + 1 == layers.size() ? output_name : "");
    } else if (auto* bn = layers[i]->as<torch::nn::BatchNorm1dImpl>()) {
      std::vector<std::string> in = {y, g.param(at + ".weight", bn->weight), g.param(at + ".bias", bn->bias),
                                     g.param(at + ".running_mean", bn->running_mean),
                                     g.param(at + ".running_var", bn->running_var)};
      y = g.add(at, "BatchNormalization", in, {onnx::Attribute::of_float("epsilon", static_cast<float>(bn->options.eps()))});
    } else if (layers[i]->as<torch::nn::ReLUImpl>()) {
      y = g.add(at, "Relu", {y});
    }  // Dropout: identity in eval
  }
  return y;
}
}  // namespace

void NetworkImpl::emit_onnx(onnx::GraphBuilder& g, const std::string& input) const {
  const std::string features = backbone_->emit_onnx(g, input);
  if (options_.head.kind == HeadKind::Localization) {
    localization_mlp_onnx(g, "position_head", features, position_head_, "positions");
    auto raw = localization_mlp_onnx(g, "uncertainty_head", features, uncertainty_head_, "uncertainty_head/output");
    auto softplus = g.add("uncertainty_head", "Softplus", {raw});
    g.add_named("uncertainty_head", "Clip",
                {softplus, g.scalar(static_cast<float>(options_.head.sigma_min)),
                 g.scalar(static_cast<float>(options_.head.sigma_max))},
                "uncertainties");
    return;
  }
  fc_->emit_onnx(g, backbone_->classifier_path(), features, Layout::Flat, output_names()[0]);
}

NamedTensors NetworkImpl::state_dict() const {
  NamedTensors out;
  for (const auto& p : named_parameters()) out.emplace_back(p.key(), p.value());
  for (const auto& b : named_buffers()) out.emplace_back(b.key(), b.value());
  return out;
}

WeightsReport NetworkImpl::load_state_dict(const NamedTensors& tensors, bool strict) {
  std::map<std::string, const torch::Tensor*> given;
  for (const auto& [k, t] : tensors) given[k] = &t;
  WeightsReport report;
  std::vector<std::pair<torch::Tensor, const torch::Tensor*>> copies;
  const std::string classifier = backbone_->classifier_path() + ".";
  auto is_head = [&](const std::string& k) {
    return k.rfind(classifier, 0) == 0 || k.rfind("position_head.", 0) == 0 || k.rfind("uncertainty_head.", 0) == 0;
  };
  for (const auto& [key, target] : state_dict()) {
    auto it = given.find(key);
    if (it == given.end()) {
      report.missing.push_back(key);
      continue;
    }
    const torch::Tensor& src = *it->second;
    if (src.sizes() != target.sizes()) {
      report.mismatched.push_back(key + ": file " + c10::str(src.sizes()) + " vs model " + c10::str(target.sizes()));
    } else {
      copies.emplace_back(target, it->second);
      report.loaded.push_back(key);
    }
    given.erase(it);
  }
  for (const auto& [k, _] : given) report.unexpected.push_back(k);

  auto first_few = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 5; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > 5) s += ", … (" + std::to_string(v.size()) + " in all)";
    return s;
  };
  const std::string variant = options_.backbone.variant;
  if (strict) {
    if (!report.mismatched.empty())
      throw Error(kErrWeights, "weights do not fit this " + variant + " model (another variant or head?); shape mismatch: " +
                                   first_few(report.mismatched));
    if (!report.missing.empty())
      throw Error(kErrWeights, "weights for this " + variant + " model are missing: " + first_few(report.missing));
    // BatchNorm's num_batches_tracked is optional in files written elsewhere; other extras are an error.
    std::vector<std::string> extra;
    for (const auto& k : report.unexpected)
      if (!ends_with(k, "num_batches_tracked")) extra.push_back(k);
    if (!extra.empty())
      throw Error(kErrWeights, "the file holds tensors this " + variant + " model does not have: " + first_few(extra));
  } else {
    std::vector<std::string> backbone_missing, backbone_bad;
    for (const auto& k : report.missing)
      if (!is_head(k) && !ends_with(k, "num_batches_tracked")) backbone_missing.push_back(k);
    for (const auto& k : report.mismatched)
      if (!is_head(k)) backbone_bad.push_back(k);
    if (!backbone_bad.empty())
      throw Error(kErrWeights, "pretrained weights do not fit the " + variant + " backbone (another variant or inChans?): " +
                                   first_few(backbone_bad));
    if (!backbone_missing.empty())
      throw Error(kErrWeights, "pretrained weights lack backbone tensors of " + variant + ": " + first_few(backbone_missing));
  }
  torch::NoGradGuard g;
  for (auto& [dst, src] : copies) dst.copy_(*src);
  return report;
}

void NetworkImpl::set_backbone_frozen(bool frozen) {
  options_.freeze_backbone = frozen;
  for (auto& p : backbone_->parameters()) p.set_requires_grad(!frozen);
  // The classifier (head.fc) lives under the backbone's head module: keep it trainable.
  if (fc_) for (auto& p : fc_->parameters()) p.set_requires_grad(true);
}

std::vector<std::string> NetworkImpl::backbone_parameter_names() const {
  const std::string classifier = backbone_->classifier_path() + ".";
  std::vector<std::string> out;
  for (const auto& p : named_parameters()) {
    const std::string& k = p.key();
    if (k.rfind("position_head.", 0) == 0 || k.rfind("uncertainty_head.", 0) == 0 || (fc_ && k.rfind(classifier, 0) == 0)) continue;
    out.push_back(k);
  }
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> NetworkImpl::trainable_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : named_parameters())
    if (p.value().requires_grad()) out.emplace_back(p.key(), p.value());
  return out;
}

std::map<std::string, std::string> network_metadata(const NetworkOptions& o) {
  return {
      {"heimdall.family", find_variant(o.backbone.variant).family},
      {"heimdall.variant", o.backbone.variant},
      {"heimdall.in_chans", std::to_string(o.backbone.in_chans)},
      {"heimdall.head", head_kind_name(o.head.kind)},
      {"heimdall.outputs", std::to_string(o.head.outputs)},
      {"format", "pt"},
  };
}

}  // namespace heimdall
