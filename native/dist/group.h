// A process group for data-parallel training on PyTorch's own distributed runtime (c10d): a TCPStore
// rendezvous, then a Gloo (CPU) or NCCL (CUDA) backend. The engine and the binding use only this class; the
// c10d headers stay in native/dist/*.cc, and each backend's construction in one file (gloo.cc, nccl.cc).
//
// Every call is blocking and collective unless said otherwise: all ranks call it in the same order. Failures
// (a rank that never joins, a dead peer, a timeout) throw Error(kErrDistributed) naming the ranks; nothing
// aborts the process.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace heimdall {

struct GroupOptions {
  std::string backend = "gloo";        // gloo | nccl
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;            // torchrun's agent hosts the store: every rank is a client
  int64_t init_timeout_ms = 60000;     // rendezvous: every rank must have joined by then
  int64_t timeout_ms = 300000;         // one collective
  int64_t restart_count = 0;           // TORCHELASTIC_RESTART_COUNT: keys of an earlier attempt are not reused
  int local_rank = 0;                  // nccl: the CUDA device
};

class Group {
 public:
  // Joins the group (blocks until every rank has joined or init_timeout_ms has passed).
  static std::shared_ptr<Group> create(const GroupOptions& options);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const;
  int size() const;
  const std::string& backend() const;

  // In place: every tensor gets root's values (parameters and buffers at the start).
  void broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
  // In place: every tensor becomes the mean over ranks (sum, then divide: Gloo has no AVG), in flat buckets of
  // up to bucket_bytes per dtype and device.
  void allreduce_mean(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes = 25 << 20);
  std::vector<double> allreduce_sum(const std::vector<double>& values);
  // The sum over ranks of a tensor (a new tensor on t's device; t is not changed): syncBatchNorm's statistics.
  at::Tensor allreduce_sum(const at::Tensor& t);
  double allreduce_max(double value);
  // Every rank's values, concatenated in rank order (lengths may differ).
  std::vector<float> allgather(const std::vector<float>& values);
  void barrier();

  // The store (not collective): small strings shared by the ranks, e.g. rank 0's run id.
  void store_set(const std::string& key, const std::string& value);
  std::string store_get(const std::string& key, int64_t timeout_ms);  // waits for the key

 private:
  struct Impl;
  explicit Group(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

using GroupPtr = std::shared_ptr<Group>;

}  // namespace heimdall
