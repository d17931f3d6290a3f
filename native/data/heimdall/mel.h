// Mel-spectrogram features of received IQ, as the Heimdall reference service computed them: the spectrogram
// of the IQ *magnitude*, 128 mel bands, n_fft 2048, hop 512, periodic Hann window, power → dB, normalised,
// cropped or padded to 32 frames. Batched on ATen (at::stft + one matmul).
//
// Conventions (the reference test in test/data/mel.test.ts re-implements these in numpy):
//   * STFT: center = true with reflect padding of n_fft/2, onesided, not normalised; power = |X|².
//     Frames = 1 + ⌊S / hop⌋ before cropping/padding.
//   * Mel scale: HTK (mel = 2595·log10(1 + f/700)), triangular filters between n_mels + 2 equally spaced mel
//     points from f_min to f_max (default 0 … sample_rate/2), no area normalisation — torchaudio's
//     MelSpectrogram defaults (mel_scale="htk", norm=None). Frequencies of the n_fft/2 + 1 bins:
//     linspace(0, sample_rate/2).
//   * dB and normalisation, with FIXED constants (no per-sample statistics, so absolute received power —
//     the thing a localisation model learns from — survives, and ONNX inference can reproduce it with
//     Log/Max/Sub/Div):  x = (max(10·log10(max(mel, amin)), floor_db) − ref_db) / scale_db.
//     Defaults are set for IQ in √mW (|iq|² = power in mW), the unit the synthetic generator writes.
//   * Frames: the first `frames` frames are kept; shorter spectrograms are padded at the end with 0
//     (the normalised reference level).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace heimdall {

struct MelConfig {
  double sample_rate = 192000.0;  // Hz; the reference's on-disk rate (a manifest overrides it)
  int64_t n_fft = 2048;
  int64_t hop = 512;
  int64_t n_mels = 128;
  int64_t frames = 32;
  double f_min = 0.0;
  double f_max = 0.0;  // 0 → sample_rate / 2
  double amin = 1e-20;
  double floor_db = -140.0;
  double ref_db = -80.0;
  double scale_db = 20.0;

  void validate() const;  // throws heimdall::Error(kErrInvalidArgument)
  std::string describe() const;
};

// Triangular HTK mel filterbank, [n_fft/2 + 1, n_mels], float32.
at::Tensor mel_filterbank(int64_t n_freqs, double f_min, double f_max, int64_t n_mels, double sample_rate);

class MelSpectrogram {
 public:
  explicit MelSpectrogram(MelConfig config);
  // signal: complex [..., S] (its magnitude is used) or real [..., S] (taken as the magnitude already).
  // Returns float32 [..., n_mels, frames]. Needs S > n_fft / 2 (reflect padding).
  at::Tensor operator()(const at::Tensor& signal) const;
  // The same up to (and including) dB, before flooring/normalisation and frame cropping: [..., n_mels, T].
  at::Tensor mel_db(const at::Tensor& signal) const;
  const MelConfig& config() const { return config_; }
  const at::Tensor& filterbank() const { return fb_; }

 private:
  MelConfig config_;
  at::Tensor window_;  // [n_fft]
  at::Tensor fb_;      // [n_freqs, n_mels] (dense, for reference)
  // The filterbank is sparse (each bin feeds at most two triangles): per filter, its first bin and weights.
  std::vector<int64_t> first_bin_;
  std::vector<std::vector<float>> weights_;
};

// Crops or pads (with `fill`) the last dimension to `frames`.
at::Tensor fit_frames(const at::Tensor& x, int64_t frames, double fill = 0.0);

}  // namespace heimdall
