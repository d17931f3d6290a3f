// The on-disk Heimdall data set: a directory of `<id>_iq.npy` (complex64, [receivers, samples] or
// [samples]) and `<id>_label.npy` (float32 or float64 [2]: lat, lon in degrees), with an optional
// `manifest.json`:
//   { "sample_rate": 192000,                       // Hz (default 192000, the reference's rate)
//     "receivers": [{"name": "...", "lat": .., "lon": .., "alt": ..}, ...],  // default: the 7 reference
//                                                  // receivers when the IQ has 7 rows
//     "margin_deg": 0.5,                           // training area = receivers' box + margin
//     "features": {"ref_db": -80, "scale_db": 20, "floor_db": -140} }  // optional overrides
// Opening checks every file's header (dtype, order, shape, size) so a bad file fails at once with an error
// naming it; IQ is read and featurised on first use and cached in memory.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/heimdall/rf_dataset.h"

namespace heimdall {

struct DirectoryOptions {
  MelConfig mel;  // sample_rate and the dB constants may be overridden by the manifest
  AugmentConfig augment;
  bool cache = true;
  int64_t cache_limit_bytes = int64_t{4} << 30;
};

class NpyDirectoryDataset final : public RfDataset {
 public:
  NpyDirectoryDataset(std::string dir, std::vector<Receiver> receivers, int64_t channels, PositionNormalization norm,
                      MelConfig mel, DirectoryOptions options, std::vector<std::string> ids,
                      std::vector<std::pair<double, double>> labels);
  int64_t size() const override { return static_cast<int64_t>(ids_.size()); }
  std::string describe() const override;
  const std::string& directory() const { return dir_; }
  const std::vector<std::string>& ids() const { return ids_; }
  std::string iq_path(int64_t i) const;

 protected:
  at::Tensor compute_features(const std::vector<int64_t>& indices) const override;
  std::pair<double, double> position_deg(int64_t i) const override { return labels_[static_cast<size_t>(i)]; }

 private:
  std::string dir_;
  std::vector<std::string> ids_;
  std::vector<std::pair<double, double>> labels_;
};

std::shared_ptr<NpyDirectoryDataset> open_npy_directory(const std::string& dir, DirectoryOptions options = {});

}  // namespace heimdall
