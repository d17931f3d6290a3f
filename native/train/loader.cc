#include "train/loader.h"

#include <algorithm>
#include <numeric>
#include <random>

#include <pthread.h>

#include <ATen/ATen.h>

#include "common/threads.h"
#include "errors.h"

namespace heimdall {

uint64_t mix_seed(uint64_t a, uint64_t b) {
  uint64_t z = a + 0x9E3779B97F4A7C15ull * (b + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

Loader::Loader(DatasetPtr dataset, const LoaderOptions& options) : dataset_(std::move(dataset)), options_(options) {
  if (options.batch_size < 1) throw Error(kErrInvalidArgument, "batchSize must be ≥ 1, got " + std::to_string(options.batch_size));
  const int64_t n = dataset_->size();
  if (n < 1) throw Error(kErrInvalidArgument, "the data set is empty: " + dataset_->describe());
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  if (options.shuffle) {
    std::mt19937_64 rng(mix_seed(options.seed, static_cast<uint64_t>(options.epoch)));
    std::shuffle(order.begin(), order.end(), rng);
  }
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size)
    throw Error(kErrInvalidArgument, "rank " + std::to_string(options.rank) + " is outside world size " + std::to_string(options.world_size));
  if (options.world_size > 1) {
    const int64_t ws = options.world_size;
    if (options.pad_to_world) {
      const int64_t total = (n + ws - 1) / ws * ws;
      for (int64_t i = n; i < total; ++i) order.push_back(order[(i - n) % n]);
    }
    std::vector<int64_t> shard;
    for (size_t i = static_cast<size_t>(options.rank); i < order.size(); i += static_cast<size_t>(ws)) shard.push_back(order[i]);
    order = std::move(shard);
  }
  const int64_t m = static_cast<int64_t>(order.size());
  for (int64_t start = 0; start < m; start += options.batch_size) {
    int64_t end = std::min(m, start + options.batch_size);
    if (options.drop_singleton && end - start == 1 && start > 0) break;
    batches_.emplace_back(order.begin() + start, order.begin() + end);
  }
  if (options.background) thread_ = std::thread([this] { produce(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Batch Loader::make_batch(size_t b) const {
  BatchContext ctx;
  ctx.augment = options_.augment;
  ctx.seed = mix_seed(mix_seed(options_.seed, static_cast<uint64_t>(options_.epoch)), b);
  if (options_.world_size > 1) ctx.seed = mix_seed(ctx.seed, static_cast<uint64_t>(options_.rank));  // ranks augment differently
  Batch batch = dataset_->get_batch(batches_[b], ctx);
  if (options_.pin_memory) {
    batch.input = batch.input.pin_memory();
    batch.target = batch.target.pin_memory();
  }
  return batch;
}

void Loader::produce() {
  pthread_setname_np(pthread_self(), "heimdall-loader");
  OneIntraopThread serial;  // ATen ops on this thread stay single-threaded: no second OpenMP team
  try {
    for (size_t b = 0; b < batches_.size(); ++b) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || ready_.size() < static_cast<size_t>(std::max(1, options_.prefetch)); });
        if (stop_) return;
      }
      Batch batch = make_batch(b);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ready_.push_back(std::move(batch));
        ++produced_;
      }
      cv_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
  }
  cv_.notify_all();
}

std::optional<Batch> Loader::next() {
  if (!options_.background) {
    if (consumed_ >= batches_.size()) return std::nullopt;
    return make_batch(consumed_++);
  }
  std::unique_lock<std::mutex> lock(mutex_);
  if (consumed_ >= batches_.size()) return std::nullopt;
  cv_.wait(lock, [&] { return !ready_.empty() || error_; });
  if (ready_.empty() && error_) std::rethrow_exception(error_);
  Batch b = std::move(ready_.front());
  ready_.pop_front();
  ++consumed_;
  lock.unlock();
  cv_.notify_all();
  return b;
}

}  // namespace heimdall
