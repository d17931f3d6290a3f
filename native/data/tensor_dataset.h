// A data set over in-memory tensors (from JavaScript typed arrays or .npy files): inputs [N, ...] and
// targets [N, ...] (float) or [N] (int64 class indices). Batches are gathered with one index_select.
#pragma once

#include "data/dataset.h"

namespace heimdall {

class TensorDataset final : public Dataset {
 public:
  // targets may be undefined (prediction only): batches then carry a zero-sized target.
  TensorDataset(at::Tensor inputs, at::Tensor targets);
  int64_t size() const override { return inputs_.size(0); }
  std::vector<int64_t> input_shape() const override;
  std::vector<int64_t> target_shape() const override;
  at::ScalarType target_dtype() const override;
  Batch get_batch(const std::vector<int64_t>& indices, const BatchContext& ctx) const override;
  bool in_memory() const override { return true; }
  std::string describe() const override;

 private:
  at::Tensor inputs_, targets_;
};

}  // namespace heimdall
