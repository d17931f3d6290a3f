#include "train/metrics.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>

namespace heimdall {

at::Tensor haversine_m(const at::Tensor& a, const at::Tensor& b) {
  constexpr double kEarthRadiusM = 6371008.8;
  const double rad = M_PI / 180.0;
  auto lat1 = a.select(1, 0).to(at::kDouble) * rad, lon1 = a.select(1, 1).to(at::kDouble) * rad;
  auto lat2 = b.select(1, 0).to(at::kDouble) * rad, lon2 = b.select(1, 1).to(at::kDouble) * rad;
  auto h = ((lat2 - lat1) / 2).sin().square() + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2).sin().square();
  return 2 * kEarthRadiusM * h.clamp(0, 1).sqrt().asin();
}

std::map<std::string, double> MetricAccumulator::add(const std::vector<at::Tensor>& outputs, const at::Tensor& target,
                                                     double loss) {
  std::map<std::string, double> m;
  m["loss"] = loss;
  const int64_t n = target.size(0);
  switch (kind_) {
    case HeadKind::Localization: {
      auto mu = outputs[0].detach().to(at::kCPU, at::kFloat);
      auto sigma = outputs[1].detach().to(at::kCPU, at::kFloat);
      auto y = target.to(at::kCPU, at::kFloat);
      m["mae"] = (mu - y).abs().mean().item<double>();
      m["mean_sigma"] = sigma.mean().item<double>();
      if (scale_.enabled) {
        auto to_deg = [&](const at::Tensor& t) {
          return at::stack({t.select(1, 0) * scale_.lat_scale + scale_.lat_center,
                            t.select(1, 1) * scale_.lon_scale + scale_.lon_center}, 1);
        };
        auto err = haversine_m(to_deg(mu.to(at::kDouble)), to_deg(y.to(at::kDouble)));
        m["position_error_m"] = err.mean().item<double>();
        if (keep_errors_) {
          auto e = err.to(at::kFloat).contiguous();
          errors_m_.insert(errors_m_.end(), e.data_ptr<float>(), e.data_ptr<float>() + e.numel());
        }
      }
      break;
    }
    case HeadKind::Classification: {
      auto pred = outputs[0].detach().argmax(1).to(at::kCPU);
      m["accuracy"] = pred.eq(target.to(at::kCPU, at::kLong)).to(at::kDouble).mean().item<double>();
      break;
    }
    case HeadKind::Regression: {
      m["mae"] = (outputs[0].detach().to(at::kCPU, at::kFloat) - target.to(at::kCPU, at::kFloat)).abs().mean().item<double>();
      break;
    }
  }
  for (const auto& [k, v] : m) sums_[k] += v * static_cast<double>(n);
  samples_ += n;
  return m;
}

std::map<std::string, double> MetricAccumulator::summary() const {
  std::map<std::string, double> out;
  if (samples_ == 0) return out;
  for (const auto& [k, v] : sums_) out[k] = v / static_cast<double>(samples_);
  if (!errors_m_.empty()) {
    std::vector<float> e = errors_m_;
    std::sort(e.begin(), e.end());
    auto pct = [&](double q) {  // linear interpolation, numpy's default
      double pos = q * static_cast<double>(e.size() - 1);
      size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(e.size() - 1, lo + 1);
      return e[lo] + (e[hi] - e[lo]) * (pos - static_cast<double>(lo));
    };
    out["position_error_median_m"] = pct(0.5);
    out["position_error_p68_m"] = pct(0.68);
    out["position_error_p95_m"] = pct(0.95);
  }
  return out;
}

}  // namespace heimdall
