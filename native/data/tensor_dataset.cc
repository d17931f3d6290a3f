#include "data/tensor_dataset.h"

#include <ATen/ATen.h>

#include "errors.h"

namespace heimdall {

TensorDataset::TensorDataset(at::Tensor inputs, at::Tensor targets) : inputs_(std::move(inputs)), targets_(std::move(targets)) {
  if (!inputs_.defined() || inputs_.dim() < 2)
    throw Error(kErrShape, "inputs must have shape [samples, ...], got " + (inputs_.defined() ? c10::str(inputs_.sizes()) : std::string("nothing")));
  if (targets_.defined() && targets_.size(0) != inputs_.size(0))
    throw Error(kErrShape, "inputs hold " + std::to_string(inputs_.size(0)) + " samples but targets hold " +
                               std::to_string(targets_.size(0)));
  inputs_ = inputs_.to(at::kFloat).contiguous();
  if (targets_.defined()) {
    targets_ = targets_.is_floating_point() ? targets_.to(at::kFloat).contiguous() : targets_.to(at::kLong).contiguous();
  }
}

std::vector<int64_t> TensorDataset::input_shape() const {
  auto s = inputs_.sizes().vec();
  return {s.begin() + 1, s.end()};
}

std::vector<int64_t> TensorDataset::target_shape() const {
  if (!targets_.defined()) return {};
  auto s = targets_.sizes().vec();
  return {s.begin() + 1, s.end()};
}

at::ScalarType TensorDataset::target_dtype() const { return targets_.defined() ? targets_.scalar_type() : at::kFloat; }

Batch TensorDataset::get_batch(const std::vector<int64_t>& indices, const BatchContext&) const {
  auto idx = at::tensor(indices, at::kLong);
  Batch b;
  b.input = inputs_.index_select(0, idx);
  b.target = targets_.defined() ? targets_.index_select(0, idx) : at::zeros({static_cast<int64_t>(indices.size())});
  return b;
}

std::string TensorDataset::describe() const {
  return "tensor data set of " + std::to_string(inputs_.size(0)) + " samples " + c10::str(inputs_.sizes().slice(1));
}

}  // namespace heimdall
