#include "data/heimdall/geo.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <ATen/ATen.h>

#include "errors.h"

namespace heimdall {

namespace {
constexpr double kDeg = M_PI / 180.0;

void check_pairs(const at::Tensor& t, const char* what) {
  if (t.dim() < 1 || t.size(-1) != 2)
    throw Error(kErrShape, std::string(what) + ": expected positions [..., 2] (lat, lon), got " +
                               c10::str(t.sizes()));
}
}  // namespace

const std::vector<Receiver>& reference_receivers() {
  static const std::vector<Receiver> r = {
      {"Aquila di Giaveno", 45.03, 7.27, 600}, {"Montanaro", 45.234, 7.857, 300},
      {"Torino", 45.044, 7.672, 250},          {"Coazze", 45.048, 7.238, 700},
      {"Passo del Giovi", 44.561, 8.956, 480}, {"Genova", 44.395, 8.956, 100},
      {"Milano-Baggio", 45.478, 9.123, 120},
  };
  return r;
}

GeoBox bounding_box(const std::vector<Receiver>& receivers, double margin_deg) {
  if (receivers.empty()) throw Error(kErrInvalidArgument, "bounding_box: no receivers");
  GeoBox b{receivers[0].lat, receivers[0].lat, receivers[0].lon, receivers[0].lon};
  for (const auto& r : receivers) {
    b.lat_min = std::min(b.lat_min, r.lat);
    b.lat_max = std::max(b.lat_max, r.lat);
    b.lon_min = std::min(b.lon_min, r.lon);
    b.lon_max = std::max(b.lon_max, r.lon);
  }
  b.lat_min -= margin_deg;
  b.lat_max += margin_deg;
  b.lon_min -= margin_deg;
  b.lon_max += margin_deg;
  return b;
}

PositionNormalization PositionNormalization::of_box(const GeoBox& box) {
  PositionNormalization n;
  n.lat_center = (box.lat_min + box.lat_max) / 2;
  n.lon_center = (box.lon_min + box.lon_max) / 2;
  n.lat_half_range = std::max(1e-9, (box.lat_max - box.lat_min) / 2);
  n.lon_half_range = std::max(1e-9, (box.lon_max - box.lon_min) / 2);
  return n;
}

at::Tensor PositionNormalization::normalize(const at::Tensor& degrees) const {
  check_pairs(degrees, "normalize");
  at::Tensor center = at::tensor({lat_center, lon_center}, degrees.options().dtype(at::kDouble));
  at::Tensor half = at::tensor({lat_half_range, lon_half_range}, degrees.options().dtype(at::kDouble));
  return ((degrees.to(at::kDouble) - center) / half).to(degrees.scalar_type());
}

at::Tensor PositionNormalization::denormalize(const at::Tensor& normalized) const {
  check_pairs(normalized, "denormalize");
  at::Tensor center = at::tensor({lat_center, lon_center}, normalized.options().dtype(at::kDouble));
  at::Tensor half = at::tensor({lat_half_range, lon_half_range}, normalized.options().dtype(at::kDouble));
  return (normalized.to(at::kDouble) * half + center).to(normalized.scalar_type());
}

std::string PositionNormalization::to_json() const {
  std::ostringstream s;
  s.precision(17);
  s << "{\"lat_center\":" << lat_center << ",\"lon_center\":" << lon_center << ",\"lat_half_range\":" << lat_half_range
    << ",\"lon_half_range\":" << lon_half_range << "}";
  return s.str();
}

double haversine_distance_m(double lat1, double lon1, double lat2, double lon2) {
  const double dlat = (lat2 - lat1) * kDeg, dlon = (lon2 - lon1) * kDeg;
  const double h = std::pow(std::sin(dlat / 2), 2) + std::cos(lat1 * kDeg) * std::cos(lat2 * kDeg) * std::pow(std::sin(dlon / 2), 2);
  return 2 * kEarthRadiusM * std::asin(std::min(1.0, std::sqrt(h)));
}

at::Tensor haversine_distance_m(const at::Tensor& a, const at::Tensor& b) {
  check_pairs(a, "haversine");
  check_pairs(b, "haversine");
  at::Tensor x = a.to(at::kDouble) * kDeg, y = b.to(at::kDouble) * kDeg;
  at::Tensor lat1 = x.select(-1, 0), lon1 = x.select(-1, 1), lat2 = y.select(-1, 0), lon2 = y.select(-1, 1);
  at::Tensor h = ((lat2 - lat1) / 2).sin().square() + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2).sin().square();
  return 2 * kEarthRadiusM * h.sqrt().clamp_max(1.0).asin();
}

double percentile(const at::Tensor& values, double q) {
  at::Tensor v = values.reshape({-1}).to(at::kDouble);
  const int64_t n = v.numel();
  if (n == 0) throw Error(kErrInvalidArgument, "percentile of an empty tensor");
  if (q < 0 || q > 100) throw Error(kErrInvalidArgument, "percentile: q must be in [0, 100]");
  at::Tensor s = std::get<0>(v.sort()).contiguous();
  const double* d = s.data_ptr<double>();
  const double pos = q / 100.0 * static_cast<double>(n - 1);
  const int64_t lo = static_cast<int64_t>(std::floor(pos));
  const int64_t hi = std::min(n - 1, lo + 1);
  const double frac = pos - static_cast<double>(lo);
  return d[lo] + (d[hi] - d[lo]) * frac;
}

ErrorSummary summarize_errors(const at::Tensor& errors_m) {
  ErrorSummary s;
  s.count = errors_m.numel();
  if (s.count == 0) return s;
  s.mean = errors_m.to(at::kDouble).mean().item<double>();
  s.median = percentile(errors_m, 50);
  s.p68 = percentile(errors_m, 68);
  s.p95 = percentile(errors_m, 95);
  return s;
}

}  // namespace heimdall
