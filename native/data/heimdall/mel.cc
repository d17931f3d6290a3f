#include "data/heimdall/mel.h"

#include <cmath>
#include <sstream>

#include <ATen/ATen.h>

#include "errors.h"

namespace heimdall {

namespace {

double hz_to_mel(double f) { return 2595.0 * std::log10(1.0 + f / 700.0); }
double mel_to_hz(double m) { return 700.0 * (std::pow(10.0, m / 2595.0) - 1.0); }
}  // namespace

void MelConfig::validate() const {
  auto bad = [](const std::string& what) { throw Error(kErrInvalidArgument, "mel features: " + what); };
  if (!(sample_rate > 0) || !std::isfinite(sample_rate)) bad("sample_rate must be a positive number of Hz");
  if (n_fft < 16) bad("n_fft must be at least 16, got " + std::to_string(n_fft));
  if (hop < 1) bad("hop must be positive, got " + std::to_string(hop));
  if (n_mels < 1) bad("n_mels must be positive, got " + std::to_string(n_mels));
  if (frames < 1) bad("frames must be positive, got " + std::to_string(frames));
  const double top = f_max > 0 ? f_max : sample_rate / 2;
  if (f_min < 0 || f_min >= top) bad("need 0 ≤ f_min < f_max ≤ sample_rate/2");
  if (top > sample_rate / 2 + 1e-9) bad("f_max must not exceed sample_rate/2");
  if (!(amin > 0)) bad("amin must be positive");
  if (!(scale_db > 0)) bad("scale_db must be positive");
}

std::string MelConfig::describe() const {
  std::ostringstream s;
  s << "mel(htk) sr=" << sample_rate << " n_fft=" << n_fft << " hop=" << hop << " n_mels=" << n_mels
    << " frames=" << frames << " x=(max(dB," << floor_db << ")-(" << ref_db << "))/" << scale_db;
  return s.str();
}

at::Tensor mel_filterbank(int64_t n_freqs, double f_min, double f_max, int64_t n_mels, double sample_rate) {
  std::vector<double> f_pts(n_mels + 2);
  const double m_min = hz_to_mel(f_min), m_max = hz_to_mel(f_max);
  for (int64_t i = 0; i < n_mels + 2; ++i)
    f_pts[i] = mel_to_hz(m_min + (m_max - m_min) * static_cast<double>(i) / static_cast<double>(n_mels + 1));
  at::Tensor fb = at::zeros({n_freqs, n_mels}, at::kFloat);
  auto a = fb.accessor<float, 2>();
  for (int64_t k = 0; k < n_freqs; ++k) {
    const double f = (sample_rate / 2) * static_cast<double>(k) / static_cast<double>(n_freqs - 1);
    for (int64_t m = 0; m < n_mels; ++m) {
      const double down = (f - f_pts[m]) / (f_pts[m + 1] - f_pts[m]);
      const double up = (f_pts[m + 2] - f) / (f_pts[m + 2] - f_pts[m + 1]);
      const double w = std::max(0.0, std::min(down, up));
      a[k][m] = static_cast<float>(w);
    }
  }
  return fb;
}

MelSpectrogram::MelSpectrogram(MelConfig config) : config_(std::move(config)) {
  config_.validate();
  const double f_max = config_.f_max > 0 ? config_.f_max : config_.sample_rate / 2;
  window_ = at::hann_window(config_.n_fft, /*periodic=*/true, at::TensorOptions().dtype(at::kFloat));
  fb_ = mel_filterbank(config_.n_fft / 2 + 1, config_.f_min, f_max, config_.n_mels, config_.sample_rate);
  auto a = fb_.accessor<float, 2>();
  const int64_t n_freqs = fb_.size(0);
  first_bin_.assign(static_cast<size_t>(config_.n_mels), 0);
  weights_.assign(static_cast<size_t>(config_.n_mels), {});
  for (int64_t m = 0; m < config_.n_mels; ++m) {
    int64_t lo = 0, hi = -1;
    for (int64_t k = 0; k < n_freqs; ++k)
      if (a[k][m] != 0.f) {
        if (hi < 0) lo = k;
        hi = k;
      }
    first_bin_[m] = lo;
    for (int64_t k = lo; k <= hi; ++k) weights_[m].push_back(a[k][m]);
  }
}

at::Tensor MelSpectrogram::mel_db(const at::Tensor& signal) const {
  if (signal.dim() < 1) throw Error(kErrShape, "mel features: expected a signal [..., samples], got a scalar");
  const int64_t s = signal.size(-1);
  if (s <= config_.n_fft / 2)
    throw Error(kErrShape, "mel features: a signal needs more than n_fft/2 = " + std::to_string(config_.n_fft / 2) +
                               " samples, got " + std::to_string(s));
  at::Tensor mag;
  if (signal.is_complex()) {  // |iq| in one pass (at::abs on complex goes through a slower hypot)
    at::Tensor c = at::view_as_real(signal.to(at::kComplexFloat).contiguous());
    mag = at::empty(signal.sizes(), at::kFloat);
    const float* in = c.data_ptr<float>();
    float* out = mag.data_ptr<float>();
    const int64_t count = mag.numel();
    for (int64_t k = 0; k < count; ++k) out[k] = std::sqrt(in[2 * k] * in[2 * k] + in[2 * k + 1] * in[2 * k + 1]);
  } else {
    mag = signal.to(at::kFloat);
  }
  auto lead = mag.sizes().vec();
  lead.pop_back();
  mag = mag.reshape({-1, s}).contiguous();
  // STFT as torch.stft(center=True, pad_mode="reflect", onesided): frames of the reflect-padded signal,
  // windowed while copied into one contiguous [N·T, n_fft] batch, then a single batched real FFT.
  const int64_t n = mag.size(0), n_fft = config_.n_fft, hop = config_.hop, pad = n_fft / 2;
  const int64_t t = 1 + s / hop, f = n_fft / 2 + 1, mels = config_.n_mels;
  at::Tensor frames = at::empty({n * t, n_fft}, at::kFloat);
  {
    const float* src = mag.data_ptr<float>();
    const float* win = window_.data_ptr<float>();
    float* dst = frames.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) {
      const float* x = src + i * s;
      for (int64_t j = 0; j < t; ++j) {
        float* row = dst + (i * t + j) * n_fft;
        const int64_t start = j * hop - pad;
        if (start >= 0 && start + n_fft <= s) {
          for (int64_t k = 0; k < n_fft; ++k) row[k] = x[start + k] * win[k];
        } else {
          for (int64_t k = 0; k < n_fft; ++k) {
            int64_t idx = start + k;
            if (idx < 0) idx = -idx;
            if (idx >= s) idx = 2 * (s - 1) - idx;
            row[k] = x[idx] * win[k];
          }
        }
      }
    }
  }
  at::Tensor spec = at::view_as_real(at::fft_rfft(frames, n_fft, -1)).contiguous();  // [N·T, F, 2]
  // Mel power: Σ_k w[m,k]·|X[k,t]|² over each filter's nonzero bins only.
  const float* x = spec.data_ptr<float>();
  at::Tensor mel = at::zeros({n, mels, t}, at::kFloat);
  float* o = mel.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < t; ++j) {
      const float* row = x + (i * t + j) * f * 2;
      for (int64_t m = 0; m < mels; ++m) {
        const auto& w = weights_[static_cast<size_t>(m)];
        const float* bin = row + first_bin_[static_cast<size_t>(m)] * 2;
        float acc = 0.f;
        for (size_t k = 0; k < w.size(); ++k) acc += w[k] * (bin[2 * k] * bin[2 * k] + bin[2 * k + 1] * bin[2 * k + 1]);
        o[(i * mels + m) * t + j] = acc;
      }
    }
  at::Tensor db = mel.clamp_min(config_.amin).log10_().mul_(10.0);
  auto out_shape = lead;
  out_shape.push_back(config_.n_mels);
  out_shape.push_back(db.size(-1));
  return db.reshape(out_shape);
}

at::Tensor fit_frames(const at::Tensor& x, int64_t frames, double fill) {
  const int64_t t = x.size(-1);
  if (t == frames) return x.contiguous();
  if (t > frames) return x.narrow(-1, 0, frames).contiguous();
  auto shape = x.sizes().vec();
  shape.back() = frames;
  at::Tensor out = at::full(shape, fill, x.options());
  out.narrow(-1, 0, t).copy_(x);
  return out;
}

at::Tensor MelSpectrogram::operator()(const at::Tensor& signal) const {
  at::Tensor db = mel_db(signal);
  db.clamp_min_(config_.floor_db).sub_(config_.ref_db).div_(config_.scale_db);
  return fit_frames(db, config_.frames, 0.0);
}

}  // namespace heimdall
