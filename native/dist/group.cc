#include "dist/group.h"

#include <algorithm>
#include <map>
#include <thread>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "dist/backends.h"
#include "errors.h"

namespace heimdall {

namespace {

using ms = std::chrono::milliseconds;

std::string seconds_str(int64_t ms_) {
  std::string s = std::to_string(ms_ / 1000.0);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s + " s";
}

std::string list_ranks(const std::vector<int>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// Runs `fn`, turning c10d's and Gloo's exceptions into one Error(kErrDistributed) that says which rank, what
// it was doing, and what to check. heimdall::Error passes through.
template <typename F>
auto guarded(int rank, const std::string& what, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Error(kErrDistributed, "rank " + std::to_string(rank) + ": " + what + " failed: " + e.what_without_backtrace() +
                                     " (a peer rank may have exited or be unreachable; check the other ranks' output)");
  } catch (const std::exception& e) {
    throw Error(kErrDistributed, "rank " + std::to_string(rank) + ": " + what + " failed: " + e.what() +
                                     " (a peer rank may have exited or be unreachable; check the other ranks' output)");
  }
}

// Tensors grouped by (device, dtype) in order, then cut into buckets of at most `bytes` (a tensor larger than a
// bucket gets one of its own).
std::vector<std::vector<at::Tensor>> buckets_of(const std::vector<at::Tensor>& tensors, int64_t bytes) {
  std::map<std::pair<std::string, int>, std::vector<at::Tensor>> by_kind;
  std::vector<std::pair<std::string, int>> order;
  for (const auto& t : tensors) {
    if (!t.defined() || t.numel() == 0) continue;
    auto key = std::make_pair(t.device().str(), static_cast<int>(t.scalar_type()));
    if (!by_kind.count(key)) order.push_back(key);
    by_kind[key].push_back(t);
  }
  std::vector<std::vector<at::Tensor>> out;
  for (const auto& key : order) {
    std::vector<at::Tensor> cur;
    int64_t cur_bytes = 0;
    for (const auto& t : by_kind[key]) {
      const int64_t b = t.numel() * static_cast<int64_t>(t.element_size());
      if (!cur.empty() && cur_bytes + b > bytes) {
        out.push_back(std::move(cur));
        cur.clear();
        cur_bytes = 0;
      }
      cur.push_back(t);
      cur_bytes += b;
    }
    if (!cur.empty()) out.push_back(std::move(cur));
  }
  return out;
}

at::Tensor flatten(const std::vector<at::Tensor>& bucket) {
  if (bucket.size() == 1) return bucket[0].reshape(-1).clone();
  std::vector<at::Tensor> flat;
  flat.reserve(bucket.size());
  for (const auto& t : bucket) flat.push_back(t.reshape(-1));
  return at::cat(flat);
}

void unflatten_into(const at::Tensor& flat, const std::vector<at::Tensor>& bucket) {
  int64_t offset = 0;
  for (const auto& t : bucket) {
    const int64_t n = t.numel();
    t.copy_(flat.narrow(0, offset, n).view(t.sizes()));
    offset += n;
  }
}

}  // namespace

struct Group::Impl {
  GroupOptions options;
  c10::intrusive_ptr<c10d::Store> root_store;  // the TCPStore
  c10::intrusive_ptr<c10d::Store> store;       // heimdall/<restart>/ on it: the ranks' shared strings
  c10::intrusive_ptr<c10d::Backend> backend;
  at::Device device{at::kCPU};  // where small collectives' tensors live: NCCL reduces CUDA tensors only

  void wait(const c10::intrusive_ptr<c10d::Work>& work) {
    work->wait();
  }
};

Group::Group(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Group::~Group() = default;

std::shared_ptr<Group> Group::create(const GroupOptions& o) {
  if (o.world_size < 1) throw Error(kErrInvalidArgument, "worldSize must be ≥ 1, got " + std::to_string(o.world_size));
  if (o.rank < 0 || o.rank >= o.world_size)
    throw Error(kErrInvalidArgument, "rank " + std::to_string(o.rank) + " is outside 0…" + std::to_string(o.world_size - 1) +
                                         " (worldSize " + std::to_string(o.world_size) + ")");
  if (o.master_port < 1 || o.master_port > 65535)
    throw Error(kErrInvalidArgument, "masterPort must be in 1…65535, got " + std::to_string(o.master_port));
  if (o.backend != "gloo" && o.backend != "nccl")
    throw Error(kErrInvalidArgument, "unknown distributed backend \"" + o.backend + "\"; valid: gloo (CPU), nccl (CUDA)");
  if (o.init_timeout_ms < 1 || o.timeout_ms < 1) throw Error(kErrInvalidArgument, "distributed timeouts must be ≥ 1 ms");

  auto impl = std::make_unique<Impl>();
  impl->options = o;
  const std::string where = o.master_addr + ":" + std::to_string(o.master_port);
  const bool server = o.rank == 0 && !o.agent_store;

  // 1. The store: rank 0 hosts a TCPStore (unless torchrun's agent does); the others connect to it.
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(o.master_port);
    so.isServer = server;
    so.numWorkers = std::nullopt;
    so.waitWorkers = false;  // joining is checked below, where the missing ranks can be named
    so.timeout = ms(o.init_timeout_ms);
    impl->root_store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
  } catch (const c10::Error& e) {
    const std::string why = e.what_without_backtrace();
    if (server)
      throw Error(kErrDistributed, "rank 0 could not host the rendezvous store on " + where + ": " + why +
                                       " (is the port in use? choose another MASTER_PORT)");
    throw Error(kErrDistributed, "rank " + std::to_string(o.rank) + " could not reach the rendezvous store at " + where +
                                     " within " + seconds_str(o.init_timeout_ms) + ": " + why +
                                     (o.agent_store ? " (torchrun's agent hosts it)" : " (rank 0 hosts it: did rank 0 start?)"));
  }
  impl->store = c10::make_intrusive<c10d::PrefixStore>("heimdall/" + std::to_string(o.restart_count) + "/",
                                                       impl->root_store);

  // 2. Every rank announces itself and waits for all the others, so that a rank that never comes is named.
  guarded(o.rank, "the rendezvous at " + where, [&] {
    impl->store->set("joined/" + std::to_string(o.rank), std::vector<uint8_t>{'1'});
    const auto deadline = std::chrono::steady_clock::now() + ms(o.init_timeout_ms);
    std::vector<int> missing;
    for (int r = 0; r < o.world_size; ++r) missing.push_back(r);
    while (true) {
      std::vector<int> still;
      for (int r : missing)
        if (!impl->store->check({"joined/" + std::to_string(r)})) still.push_back(r);
      missing = std::move(still);
      if (missing.empty()) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        throw Error(kErrDistributed, "rank " + std::to_string(o.rank) + ": rank" + (missing.size() > 1 ? "s " : " ") +
                                         list_ranks(missing) + " of world size " + std::to_string(o.world_size) +
                                         " did not join the rendezvous at " + where + " within " +
                                         seconds_str(o.init_timeout_ms) +
                                         " (start every rank with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE)");
      }
      std::this_thread::sleep_for(ms(20));
    }
  });

  // 3. The backend, on its own prefix of the store.
  auto pg_store = c10::make_intrusive<c10d::PrefixStore>("pg", impl->store);
  if (o.backend == "nccl") impl->device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(o.local_rank));
  impl->backend = guarded(o.rank, "creating the " + o.backend + " process group", [&] {
    if (o.backend == "nccl") return dist::make_nccl_backend(pg_store, o.rank, o.world_size, ms(o.timeout_ms), o.local_rank);
    return dist::make_gloo_backend(pg_store, o.rank, o.world_size, ms(o.timeout_ms),
                                   is_loopback(o.master_addr) ? std::string("127.0.0.1") : std::string());
  });
  return std::shared_ptr<Group>(new Group(std::move(impl)));
}

int Group::rank() const { return impl_->options.rank; }
int Group::size() const { return impl_->options.world_size; }
const std::string& Group::backend() const { return impl_->options.backend; }

void Group::broadcast(const std::vector<at::Tensor>& tensors, int root) {
  guarded(rank(), "broadcast from rank " + std::to_string(root), [&] {
    c10::NoGradGuard no_grad;
    for (const auto& bucket : buckets_of(tensors, 25 << 20)) {
      std::vector<at::Tensor> flat{flatten(bucket)};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      impl_->wait(impl_->backend->broadcast(flat, opts));
      unflatten_into(flat[0], bucket);
    }
  });
}

void Group::allreduce_mean(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  guarded(rank(), "the gradient all-reduce", [&] {
    c10::NoGradGuard no_grad;
    for (const auto& bucket : buckets_of(tensors, bucket_bytes)) {
      std::vector<at::Tensor> flat{flatten(bucket)};
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp::SUM;
      impl_->wait(impl_->backend->allreduce(flat, opts));
      flat[0].div_(static_cast<double>(size()));
      unflatten_into(flat[0], bucket);
    }
  });
}

std::vector<double> Group::allreduce_sum(const std::vector<double>& values) {
  if (values.empty()) return {};
  return guarded(rank(), "an all-reduce of metrics or per-batch flags", [&] {
    std::vector<at::Tensor> t{at::tensor(values, at::kDouble).to(impl_->device)};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    impl_->wait(impl_->backend->allreduce(t, opts));
    auto c = t[0].cpu().contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  });
}

at::Tensor Group::allreduce_sum(const at::Tensor& t) {
  return guarded(rank(), "an all-reduce of BatchNorm statistics (syncBatchNorm)", [&] {
    c10::NoGradGuard no_grad;
    std::vector<at::Tensor> v{t.detach().to(impl_->device).contiguous().clone()};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    impl_->wait(impl_->backend->allreduce(v, opts));
    return v[0].to(t.device());
  });
}

double Group::allreduce_max(double value) {
  return guarded(rank(), "an all-reduce", [&] {
    std::vector<at::Tensor> t{at::tensor({value}, at::kDouble).to(impl_->device)};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::MAX;
    impl_->wait(impl_->backend->allreduce(t, opts));
    return t[0].item<double>();
  });
}

std::vector<float> Group::allgather(const std::vector<float>& values) {
  std::vector<double> lengths(size(), 0.0);
  lengths[rank()] = static_cast<double>(values.size());
  lengths = allreduce_sum(lengths);
  const int64_t longest = static_cast<int64_t>(*std::max_element(lengths.begin(), lengths.end()));
  if (longest == 0) return {};
  return guarded(rank(), "an all-gather", [&] {
    auto mine = at::zeros({longest}, at::kFloat);
    if (!values.empty()) std::copy(values.begin(), values.end(), mine.data_ptr<float>());
    std::vector<at::Tensor> in{mine.to(impl_->device)};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < size(); ++r) out[0].push_back(at::empty({longest}, at::TensorOptions().dtype(at::kFloat).device(impl_->device)));
    impl_->wait(impl_->backend->allgather(out, in));
    std::vector<float> all;
    for (int r = 0; r < size(); ++r) {
      const at::Tensor host = out[0][r].cpu().contiguous();
      const float* p = host.data_ptr<float>();
      all.insert(all.end(), p, p + static_cast<int64_t>(lengths[r]));
    }
    return all;
  });
}

void Group::barrier() {
  guarded(rank(), "a barrier", [&] { impl_->wait(impl_->backend->barrier()); });
}

void Group::store_set(const std::string& key, const std::string& value) {
  guarded(rank(), "writing \"" + key + "\" to the store", [&] {
    impl_->store->set("user/" + key, std::vector<uint8_t>(value.begin(), value.end()));
  });
}

std::string Group::store_get(const std::string& key, int64_t timeout_ms) {
  return guarded(rank(), "waiting for \"" + key + "\" in the store", [&] {
    try {
      impl_->store->wait({"user/" + key}, ms(timeout_ms));
    } catch (const c10::Error& e) {
      throw Error(kErrDistributed, "rank " + std::to_string(rank()) + ": \"" + key + "\" did not appear in the store within " +
                                       seconds_str(timeout_ms) + " (the rank that writes it may have failed)");
    }
    auto v = impl_->store->get("user/" + key);
    return std::string(v.begin(), v.end());
  });
}

}  // namespace heimdall
