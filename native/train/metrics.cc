#include "train/metrics.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>

#include "data/heimdall/geo.h"
#include "dist/group.h"

namespace heimdall {

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
        auto err = haversine_distance_m(to_deg(mu.to(at::kDouble)), to_deg(y.to(at::kDouble)));
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

void MetricAccumulator::reduce(Group& group) {
  // The keys a batch of this head adds (a rank may have seen no batch: its sums are then empty).
  std::vector<std::string> keys{"loss"};
  switch (kind_) {
    case HeadKind::Localization:
      keys.insert(keys.end(), {"mae", "mean_sigma"});
      if (scale_.enabled) keys.push_back("position_error_m");
      break;
    case HeadKind::Classification: keys.push_back("accuracy"); break;
    case HeadKind::Regression: keys.push_back("mae"); break;
  }
  std::vector<double> v{static_cast<double>(samples_)};
  for (const auto& k : keys) {
    auto it = sums_.find(k);
    v.push_back(it == sums_.end() ? 0.0 : it->second);
  }
  v = group.allreduce_sum(v);
  samples_ = static_cast<int64_t>(v[0]);
  sums_.clear();
  for (size_t i = 0; i < keys.size(); ++i) sums_[keys[i]] = v[i + 1];
  if (keep_errors_ && scale_.enabled && kind_ == HeadKind::Localization) errors_m_ = group.allgather(errors_m_);
}

std::map<std::string, double> MetricAccumulator::summary() const {
  std::map<std::string, double> out;
  if (samples_ == 0) return out;
  for (const auto& [k, v] : sums_) out[k] = v / static_cast<double>(samples_);
  if (!errors_m_.empty()) {
    const auto e = summarize_errors(at::from_blob(const_cast<float*>(errors_m_.data()), {static_cast<int64_t>(errors_m_.size())}, at::kFloat));
    out["position_error_median_m"] = e.median;
    out["position_error_p68_m"] = e.p68;
    out["position_error_p95_m"] = e.p95;
  }
  return out;
}

}  // namespace heimdall
