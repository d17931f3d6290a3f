// Batches a Dataset with a seeded shuffle that depends only on (seed, epoch): the same seed gives the same
// batches, and resuming at epoch k gives the batches an uninterrupted run would have seen.
//
// Two ways to produce the batches, the same batches either way:
// - inline (background = false): next() gathers the batch on the calling thread, using ATen's intra-op
//   threads. For in-memory data on CPU a gather takes microseconds, and doing it between two steps keeps the
//   cores to the training step: no extra thread is runnable while the step's OpenMP team works.
// - background (background = true): a producer thread prepares `prefetch` batches ahead (data computed or
//   read per batch, or CUDA, where the GPU works while the CPU prepares). Its ATen calls run single-threaded
//   (common/threads.h), so it never starts a second OpenMP thread team next to the training step's.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include "data/dataset.h"

namespace heimdall {

struct LoaderOptions {
  int64_t batch_size = 32;
  bool shuffle = false;
  bool augment = false;
  uint64_t seed = 0;
  int64_t epoch = 0;
  bool drop_singleton = false;  // drop a last batch of one sample (BatchNorm cannot train on it)
  int prefetch = 2;             // background: batches prepared ahead
  bool pin_memory = false;      // page-locked host memory for non-blocking copies to CUDA
  bool background = true;       // false: gather each batch on the thread that calls next()
  // Data-parallel sharding, as torch's DistributedSampler: the (seeded) order is padded to a multiple of
  // world_size by repeating its head (pad_to_world; without it the shards differ by at most one sample), and
  // rank r takes every world_size-th index from r. The batches are then cut from the rank's shard.
  int rank = 0;
  int world_size = 1;
  bool pad_to_world = true;
};

uint64_t mix_seed(uint64_t a, uint64_t b);  // splitmix64 of a combination: decorrelated sub-seeds

class Loader {
 public:
  Loader(DatasetPtr dataset, const LoaderOptions& options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch, or nullopt at the end of the epoch. Rethrows an error raised by the data set.
  std::optional<Batch> next();
  int64_t num_batches() const { return static_cast<int64_t>(batches_.size()); }

 private:
  void produce();
  Batch make_batch(size_t b) const;

  DatasetPtr dataset_;
  LoaderOptions options_;
  std::vector<std::vector<int64_t>> batches_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Batch> ready_;
  size_t consumed_ = 0, produced_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace heimdall
