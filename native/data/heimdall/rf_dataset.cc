#include "data/heimdall/rf_dataset.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <mutex>
#include <sstream>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "common/threads.h"
#include <ATen/Parallel.h>

#include "errors.h"

namespace heimdall {

uint64_t stream_seed(uint64_t a, uint64_t b) {
  uint64_t z = a + 0x9E3779B97F4A7C15ull * (b + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) {
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    s = z ^ (z >> 31);
  }
}

uint64_t Rng::next() {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
double Rng::uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
double Rng::normal() {
  double u1 = uniform();
  while (u1 <= 0) u1 = uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}
int64_t Rng::integer(int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(uniform() * static_cast<double>(hi - lo + 1));
}

void augment_features(at::Tensor& batch, const AugmentConfig& config, uint64_t seed) {
  if (batch.dim() < 2) return;
  const int64_t b = batch.size(0), t = batch.size(-1);
  for (int64_t k = 0; k < b; ++k) {
    Rng rng(stream_seed(seed, static_cast<uint64_t>(k)));
    at::Tensor x = batch[k];
    if (rng.uniform() < config.noise_probability && config.noise_std > 0) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(rng.next());
      x.add_(at::randn(x.sizes(), gen, x.options()).mul_(config.noise_std));
    }
    if (rng.uniform() < config.shift_probability && config.max_shift > 0 && t > 1) {
      int64_t s = rng.integer(1, config.max_shift);
      if (rng.uniform() < 0.5) s = -s;
      s = std::clamp<int64_t>(s, -(t - 1), t - 1);
      at::Tensor src = x.clone();
      if (s > 0) {  // later in time: frames move right, the first frames repeat frame 0
        x.narrow(-1, s, t - s).copy_(src.narrow(-1, 0, t - s));
        x.narrow(-1, 0, s).copy_(src.narrow(-1, 0, 1).expand_as(x.narrow(-1, 0, s)));
      } else {
        const int64_t a = -s;
        x.narrow(-1, 0, t - a).copy_(src.narrow(-1, a, t - a));
        x.narrow(-1, t - a, a).copy_(src.narrow(-1, t - 1, 1).expand_as(x.narrow(-1, t - a, a)));
      }
    }
  }
}

RfDataset::RfDataset(std::vector<Receiver> receivers, int64_t channels, PositionNormalization norm, MelConfig mel,
                     AugmentConfig augment, bool cache, int64_t cache_limit_bytes)
    : receivers_(std::move(receivers)),
      channels_(channels),
      norm_(norm),
      mel_(std::move(mel)),
      augment_(augment),
      cache_requested_(cache),
      cache_limit_bytes_(cache_limit_bytes) {}

std::vector<int64_t> RfDataset::input_shape() const {
  return {channels_, mel_.config().n_mels, mel_.config().frames};
}

void RfDataset::enable_cache() {
  const int64_t per = channels_ * mel_.config().n_mels * mel_.config().frames * 4;
  if (!cache_requested_ || size() * per > cache_limit_bytes_) return;
  cache_ = at::empty({size(), channels_, mel_.config().n_mels, mel_.config().frames}, at::kFloat);
  filled_.reset(new std::atomic<bool>[static_cast<size_t>(size())]);
  for (int64_t i = 0; i < size(); ++i) filled_[i].store(false);
  cache_enabled_ = true;
}

void RfDataset::check_index(int64_t i) const {
  if (i < 0 || i >= size())
    throw Error(kErrInvalidArgument, "sample index " + std::to_string(i) + " out of range for " + describe());
}

at::Tensor RfDataset::features(const std::vector<int64_t>& indices) const {
  for (auto i : indices) check_index(i);
  if (!cache_enabled_) return compute_features(indices);
  std::vector<int64_t> missing;
  for (auto i : indices)
    if (!filled_[i].load(std::memory_order_acquire)) missing.push_back(i);
  if (!missing.empty()) {
    std::sort(missing.begin(), missing.end());
    missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
    at::Tensor f = compute_features(missing);  // outside the lock: concurrent duplicates are identical
    std::lock_guard<std::mutex> lock(cache_mutex_);
    for (size_t k = 0; k < missing.size(); ++k) {
      if (filled_[missing[k]].load(std::memory_order_relaxed)) continue;  // another thread filled it meanwhile
      cache_[missing[k]].copy_(f[static_cast<int64_t>(k)]);
      filled_[missing[k]].store(true, std::memory_order_release);
      filled_count_.fetch_add(1, std::memory_order_acq_rel);
    }
  }
  at::Tensor idx = at::tensor(indices, at::kLong);
  return cache_.index_select(0, idx);
}

void RfDataset::materialize() const {
  if (!cache_enabled_) return;
  // Samples are independent: one worker per intra-op thread, each taking chunks of 16 from a shared counter.
  // Not at::parallel_for: with the OpenMP backend its parallel body is an inline template compiled into this
  // file, which is built without -fopenmp (the process must not hold a second OpenMP runtime next to
  // libtorch's), so it would run serially. Each worker sets its own OpenMP thread count to one, so the ATen ops
  // it calls (STFT, matmul) stay single-threaded instead of each starting a team (common/threads.h).
  const int64_t chunk = 16;
  const int64_t chunks = (size() + chunk - 1) / chunk;
  // The engines' thread count, not this thread's: materialize() runs on a libuv pool thread, whose own ATen ops are
  // single-threaded (common/threads.h).
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(default_intraop_threads(), chunks));
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    OneIntraopThread serial;
    try {
      for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
        std::vector<int64_t> idx;
        for (int64_t i = c * chunk; i < std::min(size(), (c + 1) * chunk); ++i) idx.push_back(i);
        features(idx);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next.store(chunks);
    }
  };
  std::vector<std::thread> pool;
  for (int64_t w = 1; w < workers; ++w) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

at::Tensor RfDataset::positions_deg(const std::vector<int64_t>& indices) const {
  at::Tensor out = at::empty({static_cast<int64_t>(indices.size()), 2}, at::kDouble);
  auto a = out.accessor<double, 2>();
  for (size_t k = 0; k < indices.size(); ++k) {
    check_index(indices[k]);
    auto [lat, lon] = position_deg(indices[k]);
    a[k][0] = lat;
    a[k][1] = lon;
  }
  return out;
}

Batch RfDataset::get_batch(const std::vector<int64_t>& indices, const BatchContext& ctx) const {
  Batch b;
  b.input = features(indices);
  if (ctx.augment) augment_features(b.input, augment_, ctx.seed);
  b.target = norm_.normalize(positions_deg(indices)).to(at::kFloat);
  return b;
}

std::string RfDataset::metadata_json() const {
  std::ostringstream s;
  s.precision(17);
  const MelConfig& m = mel_.config();
  s << "{\"normalization\":" << norm_.to_json() << ",\"features\":{\"sample_rate\":" << m.sample_rate
    << ",\"n_fft\":" << m.n_fft << ",\"hop\":" << m.hop << ",\"n_mels\":" << m.n_mels << ",\"frames\":" << m.frames
    << ",\"mel_scale\":\"htk\",\"amin\":" << m.amin << ",\"floor_db\":" << m.floor_db << ",\"ref_db\":" << m.ref_db
    << ",\"scale_db\":" << m.scale_db << "},\"receivers\":[";
  for (size_t k = 0; k < receivers_.size(); ++k) {
    const auto& r = receivers_[k];
    std::string name;
    for (char c : r.name) {
      if (c == '"' || c == '\\') name.push_back('\\');
      name.push_back(c);
    }
    s << (k ? "," : "") << "{\"name\":\"" << name << "\",\"lat\":" << r.lat << ",\"lon\":" << r.lon << ",\"alt\":" << r.alt
      << "}";
  }
  s << "]}";
  return s.str();
}

const RfDataset* as_rf_dataset(const Dataset& dataset) {
  const Dataset* d = &dataset;
  while (d) {
    if (auto rf = dynamic_cast<const RfDataset*>(d)) return rf;
    auto sub = dynamic_cast<const SubsetDataset*>(d);
    if (!sub) return nullptr;
    d = sub->base().get();
  }
  return nullptr;
}

}  // namespace heimdall
