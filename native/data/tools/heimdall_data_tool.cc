// Developer tool for the Heimdall data pipeline (native/data/heimdall), used by test/data/*.test.ts until the
// Node binding covers it, and by benchmarks/data. Every command prints one JSON object on stdout; a
// heimdall::Error prints "error [CODE]: message" on stderr and exits 2.
//
//   heimdall_data_tool mel <iq.npy> <sample_rate> <out.npy>        features [C, 128, 32] of one IQ file
//   heimdall_data_tool features <dir> <out_prefix>                 <prefix>_x.npy [N,C,128,32], _y.npy [N,2]
//   heimdall_data_tool synth-write <n> <seed> <dir> [opts]         the on-disk format for n synthetic samples
//   heimdall_data_tool synth-dump <n> <seed> <out_prefix> [opts]   x, y, pos (deg), snr, power, distance, inside
//   heimdall_data_tool bench [n] [seed]                            generator samples/s (uncached and cached)
//   heimdall_data_tool split <n> <seed>                            the reference split's sizes
//   heimdall_data_tool metrics <pred_deg.npy> <target_deg.npy>     haversine error summary (m)
//   heimdall_data_tool read-npy <file.npy>                         dtype, shape and sum of a .npy file
// opts: --noise-floor DBM --min-snr DB --min-receivers N --inside-fraction F --no-cache --augment SEED
//       --no-features (synth-dump: geometry and link budget only) --reference-sim (the reference's loss
//       ranges) --shadow-min/--shadow-max/--clutter-min/--clutter-max DB
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "data/dataset.h"
#include "data/heimdall/directory.h"
#include "data/heimdall/geo.h"
#include "data/heimdall/mel.h"
#include "data/heimdall/npy.h"
#include "data/heimdall/synthetic.h"
#include "errors.h"

using namespace heimdall;

namespace {

struct Args {
  std::vector<std::string> pos;
  std::map<std::string, std::string> opt;
};

Args parse(int argc, char** argv, int from) {
  Args a;
  for (int i = from; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) == 0) {
      if (s == "--no-cache" || s == "--no-features" || s == "--reference-sim") {
        a.opt[s] = "1";
      } else {
        if (i + 1 >= argc) throw Error(kErrInvalidArgument, "option " + s + " needs a value");
        a.opt[s] = argv[++i];
      }
    } else {
      a.pos.push_back(s);
    }
  }
  return a;
}

void need(const Args& a, size_t n, const char* usage) {
  if (a.pos.size() < n) throw Error(kErrInvalidArgument, std::string("usage: heimdall_data_tool ") + usage);
}

SyntheticConfig synth_config(const Args& a, int64_t n, uint64_t seed) {
  SyntheticConfig c = a.opt.count("--reference-sim") ? SyntheticConfig::reference_simulator() : SyntheticConfig{};
  c.samples = n;
  c.seed = seed;
  if (a.opt.count("--noise-floor")) c.noise_floor_dbm = std::stod(a.opt.at("--noise-floor"));
  if (a.opt.count("--min-snr")) c.min_snr_db = std::stod(a.opt.at("--min-snr"));
  if (a.opt.count("--min-receivers")) c.min_receivers = std::stoll(a.opt.at("--min-receivers"));
  if (a.opt.count("--inside-fraction")) c.inside_fraction = std::stod(a.opt.at("--inside-fraction"));
  if (a.opt.count("--no-cache")) c.cache = false;
  if (a.opt.count("--shadow-min")) c.shadow_sigma_min_db = std::stod(a.opt.at("--shadow-min"));
  if (a.opt.count("--shadow-max")) c.shadow_sigma_max_db = std::stod(a.opt.at("--shadow-max"));
  if (a.opt.count("--clutter-min")) c.clutter_min_db = std::stod(a.opt.at("--clutter-min"));
  if (a.opt.count("--clutter-max")) c.clutter_max_db = std::stod(a.opt.at("--clutter-max"));
  return c;
}

std::vector<int64_t> range(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int cmd_mel(const Args& a) {
  need(a, 3, "mel <iq.npy> <sample_rate> <out.npy>");
  at::Tensor iq = read_npy(a.pos[0], {"<c8", "<f4", "<f8"});
  MelConfig cfg;
  cfg.sample_rate = std::stod(a.pos[1]);
  MelSpectrogram mel(cfg);
  at::Tensor f = mel(iq);
  write_npy(a.pos[2], f);
  std::cout << "{\"shape\":[";
  for (int64_t d = 0; d < f.dim(); ++d) std::cout << (d ? "," : "") << f.size(d);
  std::cout << "],\"config\":\"" << cfg.describe() << "\"}\n";
  return 0;
}

int cmd_features(const Args& a) {
  need(a, 2, "features <dir> <out_prefix>");
  auto ds = open_npy_directory(a.pos[0]);
  auto idx = range(ds->size());
  Batch b = ds->get_batch(idx, BatchContext{});
  write_npy(a.pos[1] + "_x.npy", b.input);
  write_npy(a.pos[1] + "_y.npy", b.target);
  std::cout << "{\"size\":" << ds->size() << ",\"describe\":\"" << ds->describe() << "\",\"ids\":[";
  for (size_t k = 0; k < ds->ids().size(); ++k) std::cout << (k ? "," : "") << "\"" << ds->ids()[k] << "\"";
  std::cout << "],\"metadata\":" << ds->metadata_json() << "}\n";
  return 0;
}

int cmd_synth_write(const Args& a) {
  need(a, 3, "synth-write <n> <seed> <dir>");
  const int64_t n = std::stoll(a.pos[0]);
  auto ds = make_synthetic_dataset(synth_config(a, n, std::stoull(a.pos[1])));
  const auto t0 = std::chrono::steady_clock::now();
  ds->write_directory(a.pos[2], n);
  std::cout << "{\"written\":" << n << ",\"seconds\":" << seconds_since(t0) << "}\n";
  return 0;
}

int cmd_synth_dump(const Args& a) {
  need(a, 3, "synth-dump <n> <seed> <out_prefix>");
  const int64_t n = std::stoll(a.pos[0]);
  auto ds = make_synthetic_dataset(synth_config(a, n, std::stoull(a.pos[1])));
  const std::string& p = a.pos[2];
  auto idx = range(n);
  BatchContext ctx;
  if (a.opt.count("--augment")) {
    ctx.augment = true;
    ctx.seed = std::stoull(a.opt.at("--augment"));
  }
  const bool with_features = !a.opt.count("--no-features");
  Batch b;
  if (with_features) b = ds->get_batch(idx, ctx);
  const int64_t r = static_cast<int64_t>(ds->receivers().size());
  at::Tensor snr = at::empty({n, r}, at::kDouble), power = at::empty({n, r}, at::kDouble),
             dist = at::empty({n, r}, at::kDouble), inside = at::empty({n}, at::kDouble), attempts = at::empty({n}, at::kDouble);
  int64_t wide = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto& tx = ds->transmission(i);
    for (int64_t k = 0; k < r; ++k) {
      snr[i][k] = tx.snr_db[k];
      power[i][k] = tx.rx_power_dbm[k];
      dist[i][k] = tx.distance_m[k];
    }
    inside[i] = tx.inside_box ? 1.0 : 0.0;
    attempts[i] = static_cast<double>(tx.attempts);
    wide += tx.wide_fm;
  }
  if (with_features) {
    write_npy(p + "_x.npy", b.input);
    write_npy(p + "_y.npy", b.target);
  }
  write_npy(p + "_pos.npy", ds->positions_deg(idx));
  write_npy(p + "_snr.npy", snr);
  write_npy(p + "_power.npy", power);
  write_npy(p + "_dist.npy", dist);
  write_npy(p + "_inside.npy", inside);
  write_npy(p + "_attempts.npy", attempts);
  std::cout << "{\"size\":" << n << ",\"wide_fm\":" << wide << ",\"input_shape\":[" << ds->input_shape()[0] << ","
            << ds->input_shape()[1] << "," << ds->input_shape()[2] << "],\"describe\":\"" << ds->describe()
            << "\",\"metadata\":" << ds->metadata_json() << "}\n";
  return 0;
}

int cmd_bench(const Args& a) {
  const int64_t n = a.pos.size() > 0 ? std::stoll(a.pos[0]) : 256;
  const uint64_t seed = a.pos.size() > 1 ? std::stoull(a.pos[1]) : 0;
  const int64_t batch = 32;
  auto t0 = std::chrono::steady_clock::now();
  auto ds = make_synthetic_dataset(synth_config(a, n, seed));
  const double draw_s = seconds_since(t0);
  // Uncached generation, in the loader's batch size (what a streaming data set costs per epoch).
  t0 = std::chrono::steady_clock::now();
  for (int64_t s = 0; s < n; s += batch) {
    std::vector<int64_t> idx;
    for (int64_t i = s; i < std::min(n, s + batch); ++i) idx.push_back(i);
    ds->features(idx);  // fills the cache (first touch = generation)
  }
  const double gen_s = seconds_since(t0);
  // Cached batches with augmentation (every later epoch).
  t0 = std::chrono::steady_clock::now();
  for (int64_t s = 0; s < n; s += batch) {
    std::vector<int64_t> idx;
    for (int64_t i = s; i < std::min(n, s + batch); ++i) idx.push_back(i);
    ds->get_batch(idx, BatchContext{true, static_cast<uint64_t>(s)});
  }
  const double cached_s = seconds_since(t0);
  // All samples at once on ATen's threads (a fresh data set, so nothing is cached yet).
  auto fresh = make_synthetic_dataset(synth_config(a, n, seed + 1));
  t0 = std::chrono::steady_clock::now();
  fresh->materialize();
  const double materialize_s = seconds_since(t0);
  // IQ only vs features.
  t0 = std::chrono::steady_clock::now();
  const int64_t m = std::min<int64_t>(n, 64);
  for (int64_t i = 0; i < m; ++i) ds->iq(i);
  const double iq_s = seconds_since(t0);
  // Features of ready IQ (16 samples per call, as compute_features does).
  std::vector<at::Tensor> iqs;
  for (int64_t i = 0; i < 16; ++i) iqs.push_back(ds->iq(i % n));
  at::Tensor stacked = at::stack(iqs);
  MelSpectrogram mel(ds->mel_config());
  t0 = std::chrono::steady_clock::now();
  for (int rep = 0; rep < 4; ++rep) mel(stacked);
  const double mel_s = seconds_since(t0);
  at::Tensor mag = at::abs(stacked).reshape({-1, stacked.size(-1)});
  at::Tensor win = at::hann_window(2048, true, at::kFloat);
  t0 = std::chrono::steady_clock::now();
  for (int rep = 0; rep < 4; ++rep) at::stft(mag, 2048, 512, 2048, win, true, "reflect", false, true, true);
  const double stft_s = seconds_since(t0);
  std::cout << "{\"samples\":" << n << ",\"threads\":" << at::get_num_threads() << ",\"draw_seconds\":" << draw_s
            << ",\"generate_samples_per_s\":" << n / gen_s << ",\"materialize_samples_per_s\":" << n / materialize_s << ",\"iq_only_samples_per_s\":" << m / iq_s
            << ",\"mel_samples_per_s\":" << 64 / mel_s << ",\"stft_only_samples_per_s\":" << 64 / stft_s
            << ",\"cached_augmented_samples_per_s\":" << n / cached_s << ",\"caching\":" << (ds->caching() ? "true" : "false")
            << "}\n";
  return 0;
}

int cmd_split(const Args& a) {
  need(a, 2, "split <n> <seed>");
  SplitIndices s = reference_split(std::stoll(a.pos[0]), std::stoull(a.pos[1]));
  std::cout << "{\"train\":" << s.train.size() << ",\"val\":" << s.val.size() << ",\"test\":" << s.test.size() << "}\n";
  return 0;
}

int cmd_metrics(const Args& a) {
  need(a, 2, "metrics <pred_deg.npy> <target_deg.npy>");
  at::Tensor p = read_npy(a.pos[0], {"<f4", "<f8"}), t = read_npy(a.pos[1], {"<f4", "<f8"});
  at::Tensor e = haversine_distance_m(p, t);
  ErrorSummary s = summarize_errors(e);
  std::ostringstream o;
  o.precision(17);
  o << "{\"count\":" << s.count << ",\"mean\":" << s.mean << ",\"median\":" << s.median << ",\"p68\":" << s.p68
    << ",\"p95\":" << s.p95 << ",\"errors\":[";
  at::Tensor ed = e.reshape({-1}).contiguous();
  for (int64_t k = 0; k < ed.numel(); ++k) o << (k ? "," : "") << ed[k].item<double>();
  o << "]}\n";
  std::cout << o.str();
  return 0;
}

int cmd_read_npy(const Args& a) {
  need(a, 1, "read-npy <file.npy>");
  NpyHeader h = read_npy_header(a.pos[0]);
  at::Tensor t = read_npy(a.pos[0]);
  std::ostringstream o;
  o.precision(17);
  o << "{\"descr\":\"" << h.descr << "\",\"shape\":[";
  for (size_t k = 0; k < h.shape.size(); ++k) o << (k ? "," : "") << h.shape[k];
  o << "],";
  if (t.is_complex()) {
    at::Tensor r = at::view_as_real(t).to(at::kDouble);
    o << "\"sum\":" << r.select(-1, 0).sum().item<double>() << ",\"sum_imag\":" << r.select(-1, 1).sum().item<double>();
  } else {
    o << "\"sum\":" << t.to(at::kDouble).sum().item<double>();
  }
  o << "}\n";
  std::cout << o.str();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: heimdall_data_tool <mel|features|synth-write|synth-dump|bench|split|metrics|read-npy> ...\n";
    return 1;
  }
  const std::string cmd = argv[1];
  try {
    Args a = parse(argc, argv, 2);
    if (cmd == "mel") return cmd_mel(a);
    if (cmd == "features") return cmd_features(a);
    if (cmd == "synth-write") return cmd_synth_write(a);
    if (cmd == "synth-dump") return cmd_synth_dump(a);
    if (cmd == "bench") return cmd_bench(a);
    if (cmd == "split") return cmd_split(a);
    if (cmd == "metrics") return cmd_metrics(a);
    if (cmd == "read-npy") return cmd_read_npy(a);
    std::cerr << "unknown command '" << cmd << "'\n";
    return 1;
  } catch (const Error& e) {
    std::cerr << "error [" << e.code() << "]: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
