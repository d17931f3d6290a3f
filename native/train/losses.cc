#include "train/losses.h"

#include <ATen/ATen.h>

#include "errors.h"

namespace heimdall {

LossKind parse_loss(const std::string& name) {
  if (name == "gaussian_nll") return LossKind::GaussianNll;
  if (name == "cross_entropy") return LossKind::CrossEntropy;
  if (name == "mse") return LossKind::Mse;
  throw Error(kErrInvalidArgument, "unknown loss \"" + name + "\"; valid losses: gaussian_nll, cross_entropy, mse");
}

at::Tensor gaussian_nll(const at::Tensor& mu, const at::Tensor& sigma, const at::Tensor& target) {
  auto s = sigma.to(at::kFloat);
  auto diff = target.to(at::kFloat) - mu.to(at::kFloat);
  return (diff.square() / (2 * s.square()) + s.log()).mean();
}

at::Tensor compute_loss(LossKind kind, const std::vector<at::Tensor>& outputs, const at::Tensor& target,
                        double label_smoothing) {
  switch (kind) {
    case LossKind::GaussianNll: {
      if (outputs.size() != 2)
        throw Error(kErrInvalidArgument, "gaussian_nll needs a localization head (positions and uncertainties)");
      if (target.sizes() != outputs[0].sizes())
        throw Error(kErrShape, "targets must have shape " + c10::str(outputs[0].sizes()) + " (positions), got " +
                                   c10::str(target.sizes()));
      return gaussian_nll(outputs[0], outputs[1], target);
    }
    case LossKind::CrossEntropy: {
      const auto& logits = outputs.at(0);
      if (target.dim() != 1 || target.size(0) != logits.size(0))
        throw Error(kErrShape, "classification targets must be class indices of shape [" + std::to_string(logits.size(0)) +
                                   "], got " + c10::str(target.sizes()));
      auto t = target.to(at::kLong);
      auto bad = (t < 0).logical_or(t >= logits.size(1));
      if (bad.any().item<bool>())
        throw Error(kErrInvalidArgument, "class index out of range [0, " + std::to_string(logits.size(1)) + ")");
      return at::cross_entropy_loss(logits.to(at::kFloat), t, {}, at::Reduction::Mean, -100, label_smoothing);
    }
    case LossKind::Mse: {
      const auto& out = outputs.at(0);
      if (target.sizes() != out.sizes())
        throw Error(kErrShape, "regression targets must have shape " + c10::str(out.sizes()) + ", got " + c10::str(target.sizes()));
      return at::mse_loss(out.to(at::kFloat), target.to(at::kFloat));
    }
  }
  throw Error(kErrInvalidArgument, "unknown loss");
}

}  // namespace heimdall
