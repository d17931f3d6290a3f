// The native dataset interface: what the training engine's loader batches, shuffles and prefetches on its
// own thread without returning to JavaScript per batch. Implementations: tensors from typed arrays
// (tensor_dataset.h), the Heimdall RF data sets (heimdall/), subsets for splits (subset.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace heimdall {

struct Batch {
  at::Tensor input;   // [B, ...input_shape], float32, CPU
  at::Tensor target;  // [B, ...target_shape], float32 (regression/localization) or int64 class indices [B]
};

struct BatchContext {
  bool augment = false;  // train split: apply the data set's augmentation
  uint64_t seed = 0;     // deterministic per (run seed, epoch, batch): same seed → same batch
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual std::vector<int64_t> input_shape() const = 0;   // per sample, e.g. {7, 128, 32}
  virtual std::vector<int64_t> target_shape() const = 0;  // per sample, e.g. {2}; {} for class indices
  virtual at::ScalarType target_dtype() const { return at::kFloat; }
  // Must be safe to call from the loader's thread while no other thread mutates the data set.
  virtual Batch get_batch(const std::vector<int64_t>& indices, const BatchContext& ctx) const = 0;
  // True when a batch is a gather from memory (microseconds), false when it is computed or read from disk.
  // The engine's loader gathers in-memory batches on the engine's own thread between steps and prefetches the
  // others on a background thread (see train/loader.h).
  virtual bool in_memory() const { return false; }
  // A short description for errors and logs ("synthetic RF, 2000 samples").
  virtual std::string describe() const = 0;
};

using DatasetPtr = std::shared_ptr<const Dataset>;

// A view of some samples of another data set (train/val/test splits).
class SubsetDataset final : public Dataset {
 public:
  SubsetDataset(DatasetPtr base, std::vector<int64_t> indices);
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  std::vector<int64_t> input_shape() const override { return base_->input_shape(); }
  std::vector<int64_t> target_shape() const override { return base_->target_shape(); }
  at::ScalarType target_dtype() const override { return base_->target_dtype(); }
  Batch get_batch(const std::vector<int64_t>& indices, const BatchContext& ctx) const override;
  bool in_memory() const override { return base_->in_memory(); }
  std::string describe() const override;
  const std::vector<int64_t>& indices() const { return indices_; }
  const DatasetPtr& base() const { return base_; }

 private:
  DatasetPtr base_;
  std::vector<int64_t> indices_;
};

struct SplitIndices {
  std::vector<int64_t> train, val, test;
};
// The reference service's split after a seeded shuffle: test = max(1, ⌊0.1·N⌋),
// val = max(1, ⌊0.2·(N − test)⌋), the rest train (100 → 72/18/10). Needs N ≥ 3.
SplitIndices reference_split(int64_t n, uint64_t seed);

}  // namespace heimdall
