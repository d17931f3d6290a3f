#include <algorithm>
#include <numeric>
#include <random>

#include "data/dataset.h"
#include "errors.h"

namespace heimdall {

SubsetDataset::SubsetDataset(DatasetPtr base, std::vector<int64_t> indices)
    : base_(std::move(base)), indices_(std::move(indices)) {
  const int64_t n = base_->size();
  for (auto i : indices_)
    if (i < 0 || i >= n)
      throw Error(kErrInvalidArgument, "subset index " + std::to_string(i) + " out of range for " + base_->describe());
}

Batch SubsetDataset::get_batch(const std::vector<int64_t>& indices, const BatchContext& ctx) const {
  std::vector<int64_t> mapped(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) mapped[k] = indices_.at(static_cast<size_t>(indices[k]));
  return base_->get_batch(mapped, ctx);
}

std::string SubsetDataset::describe() const {
  return std::to_string(indices_.size()) + " samples of " + base_->describe();
}

SplitIndices reference_split(int64_t n, uint64_t seed) {
  if (n < 3) throw Error(kErrInvalidArgument, "a train/val/test split needs at least 3 samples, got " + std::to_string(n));
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  const int64_t test = std::max<int64_t>(1, n / 10);
  const int64_t val = std::max<int64_t>(1, (n - test) / 5);
  SplitIndices s;
  s.test.assign(order.begin(), order.begin() + test);
  s.val.assign(order.begin() + test, order.begin() + test + val);
  s.train.assign(order.begin() + test + val, order.end());
  return s;
}

}  // namespace heimdall
