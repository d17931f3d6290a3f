// Per-batch and per-epoch metrics, computed natively from detached outputs.
//   all heads:      loss
//   localization:   mae (normalised units), mean_sigma; with a position scale also position_error_m
//                   (haversine, metres): mean, and per epoch median/p68/p95
//   classification: accuracy
//   regression:     mae
#pragma once

#include <map>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "model/network.h"

namespace heimdall {

class Group;

// How normalised [lat, lon] targets map back to degrees: deg = center + value × scale.
struct PositionScale {
  bool enabled = false;
  double lat_center = 0, lon_center = 0, lat_scale = 1, lon_scale = 1;
};


class MetricAccumulator {
 public:
  MetricAccumulator(HeadKind kind, PositionScale scale, bool keep_errors)
      : kind_(kind), scale_(scale), keep_errors_(keep_errors) {}

  // Adds one batch; returns that batch's metrics (loss included).
  std::map<std::string, double> add(const std::vector<at::Tensor>& outputs, const at::Tensor& target, double loss);
  std::map<std::string, double> summary() const;  // sample-weighted means, plus percentiles when kept
  int64_t samples() const { return samples_; }
  // Collective: sums, counts and kept errors of every rank, so summary() equals one process's over all samples.
  void reduce(Group& group);

 private:
  HeadKind kind_;
  PositionScale scale_;
  bool keep_errors_;
  int64_t samples_ = 0;
  std::map<std::string, double> sums_;
  std::vector<float> errors_m_;
};

}  // namespace heimdall
