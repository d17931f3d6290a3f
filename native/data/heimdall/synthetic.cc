#include "data/heimdall/synthetic.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include "data/heimdall/npy.h"
#include "errors.h"

namespace heimdall {

namespace {
constexpr int64_t kFadingGrid = 129;  // coarse points of the diffuse fading (≥ 390 Hz for ≤ 10 Hz Doppler)
constexpr int64_t kDopplerPaths = 8;
constexpr int64_t kTones = 3;
constexpr int64_t kMaxEchoes = 8;

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o.push_back('\\');
    o.push_back(c);
  }
  return o;
}
}  // namespace

void SyntheticConfig::validate() const {
  auto bad = [](const std::string& w) { throw Error(kErrInvalidArgument, "synthetic data set: " + w); };
  if (samples < 1) bad("samples must be at least 1, got " + std::to_string(samples));
  if (receivers.empty()) bad("needs at least one receiver");
  if (min_receivers < 0 || min_receivers > static_cast<int64_t>(receivers.size()))
    bad("min_receivers must be between 0 and the number of receivers (" + std::to_string(receivers.size()) + ")");
  if (inside_fraction < 0 || inside_fraction > 1) bad("inside_fraction must be in [0, 1]");
  if (margin_deg < 0) bad("margin_deg must not be negative");
  if (inside_fraction < 1 && margin_deg <= 0) bad("a margin is needed when some transmitters lie outside the box");
  if (!(sample_rate > 0)) bad("sample_rate must be positive");
  if (iq_samples <= mel.n_fft / 2) bad("iq_samples must exceed n_fft/2 = " + std::to_string(mel.n_fft / 2));
  if (echoes_min < 0 || echoes_max < echoes_min || echoes_max > kMaxEchoes) bad("need 0 ≤ echoes_min ≤ echoes_max ≤ 8");
  if (clutter_max_db < clutter_min_db || shadow_sigma_max_db < shadow_sigma_min_db || rician_k_max_db < rician_k_min_db ||
      echo_delay_max_us < echo_delay_min_us || echo_gain_max_db < echo_gain_min_db)
    bad("each range needs min ≤ max");
  if (wide_fm_probability < 0 || wide_fm_probability > 1) bad("wide_fm_probability must be in [0, 1]");
}

SyntheticConfig SyntheticConfig::reference_simulator() {
  SyntheticConfig c;
  c.clutter_min_db = 5.0;
  c.clutter_max_db = 15.0;
  c.shadow_sigma_min_db = 3.0;
  c.shadow_sigma_max_db = 6.0;
  return c;
}

static MelConfig with_rate(MelConfig mel, double rate) {
  mel.sample_rate = rate;
  return mel;
}

SyntheticRfDataset::SyntheticRfDataset(SyntheticConfig config)
    : RfDataset(config.receivers, static_cast<int64_t>(config.receivers.size()),
                PositionNormalization::of_box(bounding_box(config.receivers, config.margin_deg)),
                with_rate(config.mel, config.sample_rate), config.augment, config.cache, config.cache_limit_bytes),
      config_(std::move(config)) {
  config_.validate();
  config_.mel.sample_rate = config_.sample_rate;
  inner_ = bounding_box(config_.receivers, 0.0);
  outer_ = bounding_box(config_.receivers, config_.margin_deg);
  tx_.reserve(static_cast<size_t>(config_.samples));
  for (int64_t i = 0; i < config_.samples; ++i) tx_.push_back(draw(i));
  t_ = at::arange(config_.iq_samples, at::kDouble).div_(config_.sample_rate);
  const double pos_scale = static_cast<double>(kFadingGrid - 1) / static_cast<double>(std::max<int64_t>(1, config_.iq_samples - 1));
  at::Tensor pos = at::arange(config_.iq_samples, at::kDouble).mul_(pos_scale);
  interp_i0_ = pos.floor().clamp_max(kFadingGrid - 2).to(at::kLong);
  interp_frac_ = (pos - interp_i0_.to(at::kDouble)).to(at::kFloat);
  enable_cache();
}

SyntheticTransmission SyntheticRfDataset::draw(int64_t i) const {
  const int64_t max_attempts = 10000;
  const uint64_t base = stream_seed(config_.seed, static_cast<uint64_t>(i));
  for (int64_t attempt = 0; attempt < max_attempts; ++attempt) {
    SyntheticTransmission tx;
    tx.stream = stream_seed(base, static_cast<uint64_t>(attempt));
    tx.attempts = attempt + 1;
    Rng rng(tx.stream);
    tx.inside_box = rng.uniform() < config_.inside_fraction;
    if (tx.inside_box) {
      tx.lat = rng.uniform(inner_.lat_min, inner_.lat_max);
      tx.lon = rng.uniform(inner_.lon_min, inner_.lon_max);
    } else {
      do {
        tx.lat = rng.uniform(outer_.lat_min, outer_.lat_max);
        tx.lon = rng.uniform(outer_.lon_min, outer_.lon_max);
      } while (inner_.contains(tx.lat, tx.lon));
    }
    tx.wide_fm = rng.uniform() < config_.wide_fm_probability;
    const double clutter = rng.uniform(config_.clutter_min_db, config_.clutter_max_db);
    const double sigma = rng.uniform(config_.shadow_sigma_min_db, config_.shadow_sigma_max_db);
    int64_t heard = 0;
    for (const auto& r : config_.receivers) {
      const double ground = haversine_distance_m(tx.lat, tx.lon, r.lat, r.lon);
      const double d = std::max(1.0, std::hypot(ground, r.alt - config_.tx_alt_m));
      const double fspl = 20 * std::log10(d) + 20 * std::log10(config_.carrier_hz) - 147.55;
      const double p = config_.tx_power_dbm - fspl - clutter + sigma * rng.normal();
      tx.distance_m.push_back(d);
      tx.rx_power_dbm.push_back(p);
      tx.snr_db.push_back(p - config_.noise_floor_dbm);
      if (tx.snr_db.back() >= config_.min_snr_db) ++heard;
    }
    if (heard >= config_.min_receivers) return tx;
  }
  throw Error(kErrInvalidArgument, "synthetic data set: no transmitter position passed the SNR filter (SNR ≥ " +
                                       std::to_string(config_.min_snr_db) + " dB at ≥ " +
                                       std::to_string(config_.min_receivers) + " receivers) in 10000 draws");
}

const SyntheticTransmission& SyntheticRfDataset::transmission(int64_t i) const {
  check_index(i);
  return tx_[static_cast<size_t>(i)];
}

std::pair<double, double> SyntheticRfDataset::position_deg(int64_t i) const {
  const auto& tx = tx_[static_cast<size_t>(i)];
  return {tx.lat, tx.lon};
}

at::Tensor SyntheticRfDataset::iq(int64_t i) const {
  const SyntheticTransmission& tx = transmission(i);
  const int64_t r_count = static_cast<int64_t>(config_.receivers.size());
  const int64_t s = config_.iq_samples;
  const double fs = config_.sample_rate;
  Rng rng(stream_seed(tx.stream, 1));

  // The transmitted FM signal: a 3-tone message m(t) ∈ [−1, 1] (tones 300–3000 Hz), instantaneous frequency
  // f(t) = dev·m(t), phase φ(t) = 2π·dev·∫m (the analytic integral). Tones advance by phasor rotation,
  // re-anchored exactly every 1024 samples.
  const double dev = tx.wide_fm ? config_.wide_deviation_hz : config_.narrow_deviation_hz;
  double tf[kTones], ta[kTones], tp[kTones], amp_sum = 0;
  for (int64_t k = 0; k < kTones; ++k) {
    tf[k] = rng.uniform(300.0, 3000.0);
    ta[k] = rng.uniform(0.3, 1.0);
    tp[k] = rng.uniform(0.0, 2 * M_PI);
    amp_sum += ta[k];
  }
  std::vector<float> f_inst(static_cast<size_t>(s));
  at::Tensor phi = at::empty({s}, at::kFloat);
  float* phi_p = phi.data_ptr<float>();
  {
    double zr[kTones] = {}, zi[kTones] = {}, rr[kTones], ri[kTones];
    for (int64_t k = 0; k < kTones; ++k) {
      rr[k] = std::cos(2 * M_PI * tf[k] / fs);
      ri[k] = std::sin(2 * M_PI * tf[k] / fs);
    }
    for (int64_t t = 0; t < s; ++t) {
      double m = 0, integral = 0;
      for (int64_t k = 0; k < kTones; ++k) {
        if (t % 1024 == 0) {
          const double arg = 2 * M_PI * tf[k] * static_cast<double>(t) / fs + tp[k];
          zr[k] = std::cos(arg);
          zi[k] = std::sin(arg);
        }
        m += ta[k] * zi[k];
        integral += ta[k] * (std::cos(tp[k]) - zr[k]) / (2 * M_PI * tf[k]);
        const double nr = zr[k] * rr[k] - zi[k] * ri[k];
        zi[k] = zr[k] * ri[k] + zi[k] * rr[k];
        zr[k] = nr;
      }
      f_inst[static_cast<size_t>(t)] = static_cast<float>(dev * m / amp_sum);
      phi_p[t] = static_cast<float>(std::fmod(2 * M_PI * dev * integral / amp_sum, 2 * M_PI));
    }
  }
  at::Tensor carrier = at::view_as_real(at::polar(at::ones({s}, at::kFloat), phi)).contiguous();  // e^{jφ}, [S, 2]
  const float* car = carrier.data_ptr<float>();

  auto gen = at::make_generator<at::CPUGeneratorImpl>(stream_seed(tx.stream, 2));
  const float noise_sigma = static_cast<float>(std::sqrt(std::pow(10.0, config_.noise_floor_dbm / 10.0) / 2));
  at::Tensor out = at::randn({r_count, s, 2}, gen, at::TensorOptions().dtype(at::kFloat));  // serial fill
  float* o = out.data_ptr<float>();

  // Per link: Rician fading h(t) (LOS + 8 Doppler paths on a coarse grid, interpolated) and the echoes'
  // multipath factor 1 + Σ b·e^{j(θ − 2π·τ·f(t))}, a smooth function of f(t) tabulated over [−dev, dev].
  constexpr int64_t kTable = 257;
  const double duration = static_cast<double>(s - 1) / fs;
  const float* frac = interp_frac_.data_ptr<float>();
  const int64_t* i0 = interp_i0_.data_ptr<int64_t>();
  std::vector<float> fade(static_cast<size_t>(kFadingGrid * 2)), table(static_cast<size_t>(kTable * 2));
  for (int64_t r = 0; r < r_count; ++r) {
    const float amp = static_cast<float>(std::sqrt(std::pow(10.0, tx.rx_power_dbm[static_cast<size_t>(r)] / 10.0)));
    const double k_lin = std::pow(10.0, rng.uniform(config_.rician_k_min_db, config_.rician_k_max_db) / 10.0);
    const double los = std::sqrt(k_lin / (k_lin + 1)), diffuse = std::sqrt(1 / (k_lin + 1) / kDopplerPaths);
    const double theta0 = rng.uniform(0.0, 2 * M_PI);
    double fd[kDopplerPaths], ps[kDopplerPaths];
    for (int64_t n = 0; n < kDopplerPaths; ++n) {
      fd[n] = config_.doppler_max_hz * std::cos(rng.uniform(0.0, 2 * M_PI));
      ps[n] = rng.uniform(0.0, 2 * M_PI);
    }
    for (int64_t g = 0; g < kFadingGrid; ++g) {
      const double tc = duration * static_cast<double>(g) / static_cast<double>(kFadingGrid - 1);
      double re = los * std::cos(theta0), im = los * std::sin(theta0);
      for (int64_t n = 0; n < kDopplerPaths; ++n) {
        re += diffuse * std::cos(2 * M_PI * fd[n] * tc + ps[n]);
        im += diffuse * std::sin(2 * M_PI * fd[n] * tc + ps[n]);
      }
      fade[static_cast<size_t>(2 * g)] = static_cast<float>(amp * re);
      fade[static_cast<size_t>(2 * g + 1)] = static_cast<float>(amp * im);
    }
    const int64_t echoes = rng.integer(config_.echoes_min, config_.echoes_max);
    double eg[kMaxEchoes], ed[kMaxEchoes], ep[kMaxEchoes];
    for (int64_t e = 0; e < echoes; ++e) {
      eg[e] = std::pow(10.0, rng.uniform(config_.echo_gain_min_db, config_.echo_gain_max_db) / 20.0);
      ed[e] = rng.uniform(config_.echo_delay_min_us, config_.echo_delay_max_us) * 1e-6;
      ep[e] = rng.uniform(0.0, 2 * M_PI);
    }
    for (int64_t j = 0; j < kTable; ++j) {
      const double f = -dev + 2 * dev * static_cast<double>(j) / static_cast<double>(kTable - 1);
      double re = 1, im = 0;
      for (int64_t e = 0; e < echoes; ++e) {
        re += eg[e] * std::cos(ep[e] - 2 * M_PI * ed[e] * f);
        im += eg[e] * std::sin(ep[e] - 2 * M_PI * ed[e] * f);
      }
      table[static_cast<size_t>(2 * j)] = static_cast<float>(re);
      table[static_cast<size_t>(2 * j + 1)] = static_cast<float>(im);
    }
    const float to_table = static_cast<float>((kTable - 1) / (2 * dev));
    float* orow = o + r * s * 2;
    for (int64_t t = 0; t < s; ++t) {
      const float w = frac[t];
      const float* a = &fade[static_cast<size_t>(2 * i0[t])];
      const float hr = a[0] + w * (a[2] - a[0]), hi = a[1] + w * (a[3] - a[1]);
      float u = (f_inst[static_cast<size_t>(t)] + static_cast<float>(dev)) * to_table;
      u = std::min(std::max(u, 0.f), static_cast<float>(kTable - 1) - 1e-3f);
      const int64_t j = static_cast<int64_t>(u);
      const float v = u - static_cast<float>(j);
      const float* b = &table[static_cast<size_t>(2 * j)];
      const float mr = b[0] + v * (b[2] - b[0]), mi = b[1] + v * (b[3] - b[1]);
      const float pr = hr * mr - hi * mi, pi = hr * mi + hi * mr;  // h·M
      const float cr = car[2 * t], ci = car[2 * t + 1];
      orow[2 * t] = orow[2 * t] * noise_sigma + (pr * cr - pi * ci);  // noise scaled here: no threaded op
      orow[2 * t + 1] = orow[2 * t + 1] * noise_sigma + (pr * ci + pi * cr);
    }
  }
  return at::view_as_complex(out);
}

at::Tensor SyntheticRfDataset::compute_features(const std::vector<int64_t>& indices) const {
  const int64_t n = static_cast<int64_t>(indices.size());
  const auto shape = input_shape();
  at::Tensor out = at::empty({n, shape[0], shape[1], shape[2]}, at::kFloat);
  // Serial: this runs on the engine's loader thread while training owns ATen's intra-op threads (starting
  // another OpenMP team here would oversubscribe the cores). materialize() parallelises across samples.
  for (int64_t k = 0; k < n; ++k)  // one sample at a time: its buffers stay small and cache-warm
    out[k].copy_(mel_(iq(indices[static_cast<size_t>(k)])));
  return out;
}

std::string SyntheticRfDataset::describe() const {
  return "synthetic RF, " + std::to_string(config_.samples) + " samples, seed " + std::to_string(config_.seed) + ", " +
         std::to_string(config_.receivers.size()) + " receivers";
}

void SyntheticRfDataset::write_directory(const std::string& dir, int64_t n) const {
  namespace fs = std::filesystem;
  if (n < 0 || n > size())
    throw Error(kErrInvalidArgument, "write_directory: n must be in [0, " + std::to_string(size()) + "], got " + std::to_string(n));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(kErrFile, "cannot create directory '" + dir + "': " + ec.message());
  for (int64_t i = 0; i < n; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "%06lld", static_cast<long long>(i));
    write_npy((fs::path(dir) / (std::string(id) + "_iq.npy")).string(), iq(i));
    const auto& tx = tx_[static_cast<size_t>(i)];
    write_npy((fs::path(dir) / (std::string(id) + "_label.npy")).string(),
              at::tensor({static_cast<float>(tx.lat), static_cast<float>(tx.lon)}, at::kFloat));
  }
  std::ostringstream m;
  m.precision(17);
  m << "{\n  \"sample_rate\": " << config_.sample_rate << ",\n  \"receivers\": [\n";
  for (size_t k = 0; k < config_.receivers.size(); ++k) {
    const auto& r = config_.receivers[k];
    m << "    {\"name\": \"" << json_escape(r.name) << "\", \"lat\": " << r.lat << ", \"lon\": " << r.lon
      << ", \"alt\": " << r.alt << "}" << (k + 1 < config_.receivers.size() ? "," : "") << "\n";
  }
  m << "  ],\n  \"margin_deg\": " << config_.margin_deg << ",\n  \"generator\": {\"kind\": \"heimdall-synthetic\", \"seed\": "
    << config_.seed << ", \"samples\": " << n << ", \"iq_unit\": \"sqrt(mW)\"}\n}\n";
  std::ofstream f(fs::path(dir) / "manifest.json", std::ios::trunc);
  f << m.str();
  if (!f) throw Error(kErrFile, "cannot write '" + (fs::path(dir) / "manifest.json").string() + "'");
}

std::shared_ptr<SyntheticRfDataset> make_synthetic_dataset(SyntheticConfig config) {
  return std::make_shared<SyntheticRfDataset>(std::move(config));
}

}  // namespace heimdall
