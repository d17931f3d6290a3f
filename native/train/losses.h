// Losses computed natively on the model outputs.
#pragma once

#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace heimdall {

enum class LossKind { GaussianNll, CrossEntropy, Mse };
LossKind parse_loss(const std::string& name);  // "gaussian_nll" | "cross_entropy" | "mse"

// mean over all elements of (y − μ)² / (2σ²) + log σ   (the reference service's loss)
at::Tensor gaussian_nll(const at::Tensor& mu, const at::Tensor& sigma, const at::Tensor& target);

// outputs: the network's outputs in order (positions, uncertainties | logits | outputs).
at::Tensor compute_loss(LossKind kind, const std::vector<at::Tensor>& outputs, const at::Tensor& target,
                        double label_smoothing);

}  // namespace heimdall
