// The common part of the Heimdall RF localisation data sets (synthetic and on-disk): one input channel per
// receiver holding its mel features [receivers, n_mels, frames], a normalised position target [2], an
// in-memory feature cache, and the train-only augmentation (additive noise, ±2-frame time shift, each p 0.3).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "data/dataset.h"
#include "data/heimdall/geo.h"
#include "data/heimdall/mel.h"

namespace heimdall {

// Defaults for C++ callers; they equal lib/data/heimdall.ts' augmentOptionsSchema, which the binding always receives complete.
struct AugmentConfig {
  double noise_probability = 0.3;
  double noise_std = 0.05;  // in normalised feature units (0.05 × scale_db 20 = 1 dB)
  double shift_probability = 0.3;
  int64_t max_shift = 2;    // frames; the vacated frames repeat the edge frame
};

// Applies the augmentation in place to a batch [B, C, M, T]; sample k of the batch draws from (seed, k).
void augment_features(at::Tensor& batch, const AugmentConfig& config, uint64_t seed);

// Deterministic 64-bit mixing (splitmix64 finaliser) to derive independent streams from (seed, index, ...).
uint64_t stream_seed(uint64_t a, uint64_t b);

// A small deterministic generator (xoshiro256**) for scalar draws.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();                     // [0, 1)
  double uniform(double lo, double hi);  // [lo, hi)
  double normal();                      // N(0, 1)
  int64_t integer(int64_t lo, int64_t hi);  // inclusive

 private:
  uint64_t s_[4];
};

class RfDataset : public Dataset {
 public:
  std::vector<int64_t> input_shape() const override;
  std::vector<int64_t> target_shape() const override { return {2}; }
  Batch get_batch(const std::vector<int64_t>& indices, const BatchContext& ctx) const override;
  // Once every sample's features are in the cache (after materialize() or a first epoch).
  bool in_memory() const override { return cache_enabled_ && filled_count_.load(std::memory_order_acquire) == size(); }

  const PositionNormalization& normalization() const { return norm_; }
  const std::vector<Receiver>& receivers() const { return receivers_; }
  const MelConfig& mel_config() const { return mel_.config(); }
  const AugmentConfig& augment_config() const { return augment_; }
  // Positions in degrees [n, 2] (lat, lon) of the given samples.
  at::Tensor positions_deg(const std::vector<int64_t>& indices) const;
  // Features without augmentation [n, C, M, T] (through the cache).
  at::Tensor features(const std::vector<int64_t>& indices) const;
  // Fills the cache for all samples now, in parallel across samples on ATen's intra-op threads (get_batch
  // computes missing samples serially on the calling thread). No-op when caching is off.
  void materialize() const;
  bool caching() const { return cache_enabled_; }
  // JSON metadata for logs/ONNX: normalisation, feature config, receivers.
  std::string metadata_json() const;

 protected:
  RfDataset(std::vector<Receiver> receivers, int64_t channels, PositionNormalization norm, MelConfig mel,
            AugmentConfig augment, bool cache, int64_t cache_limit_bytes);
  void check_index(int64_t i) const;
  // Uncached features of these samples, [n, C, M, T] float32.
  virtual at::Tensor compute_features(const std::vector<int64_t>& indices) const = 0;
  // lat, lon in degrees of sample i.
  virtual std::pair<double, double> position_deg(int64_t i) const = 0;
  void enable_cache();  // call from the derived constructor once size() is known

  std::vector<Receiver> receivers_;
  int64_t channels_;
  PositionNormalization norm_;
  MelSpectrogram mel_;
  AugmentConfig augment_;

 private:
  bool cache_requested_;
  int64_t cache_limit_bytes_;
  bool cache_enabled_ = false;
  mutable std::mutex cache_mutex_;
  mutable at::Tensor cache_;                            // [N, C, M, T] when enabled
  mutable std::unique_ptr<std::atomic<bool>[]> filled_;
  mutable std::atomic<int64_t> filled_count_{0};
};

// The RF data set behind `dataset` (unwrapping SubsetDataset views), or nullptr.
const RfDataset* as_rf_dataset(const Dataset& dataset);

}  // namespace heimdall
