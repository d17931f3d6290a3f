// Geography for the Heimdall localisation task: the reference receivers, the training area, the target
// normalisation, haversine distances and the position-error summary the metrics report.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace heimdall {

struct Receiver {
  std::string name;
  double lat = 0, lon = 0;  // degrees
  double alt = 0;           // metres above sea level
};

// The 7 WebSDR stations of the reference network (shared/reference.md §1).
const std::vector<Receiver>& reference_receivers();

struct GeoBox {
  double lat_min = 0, lat_max = 0, lon_min = 0, lon_max = 0;
  bool contains(double lat, double lon) const {
    return lat >= lat_min && lat <= lat_max && lon >= lon_min && lon <= lon_max;
  }
};
GeoBox bounding_box(const std::vector<Receiver>& receivers, double margin_deg = 0.0);

// Targets are normalised coordinates: ((lat − lat_center)/lat_half_range, (lon − lon_center)/lon_half_range),
// so the training area maps to [−1, 1]² and a freshly initialised head starts at the right scale.
struct PositionNormalization {
  double lat_center = 0, lon_center = 0, lat_half_range = 1, lon_half_range = 1;
  static PositionNormalization of_box(const GeoBox& box);
  at::Tensor normalize(const at::Tensor& degrees) const;      // [..., 2] lat, lon → normalised
  at::Tensor denormalize(const at::Tensor& normalized) const;  // [..., 2] normalised → lat, lon degrees
  std::string to_json() const;  // {"lat_center":…, "lon_center":…, "lat_half_range":…, "lon_half_range":…}
};

inline constexpr double kEarthRadiusM = 6371008.8;  // mean Earth radius (IUGG)

// Great-circle distance in metres between [..., 2] (lat, lon in degrees) tensors; computed in float64.
at::Tensor haversine_distance_m(const at::Tensor& a, const at::Tensor& b);
double haversine_distance_m(double lat1, double lon1, double lat2, double lon2);

struct ErrorSummary {
  int64_t count = 0;
  double mean = 0, median = 0, p68 = 0, p95 = 0;
};
// Percentiles by linear interpolation between order statistics (numpy's default 'linear' method).
double percentile(const at::Tensor& values, double q);  // q in [0, 100]
ErrorSummary summarize_errors(const at::Tensor& errors_m);

}  // namespace heimdall
