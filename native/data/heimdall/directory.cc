#include "data/heimdall/directory.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <ATen/ATen.h>

#include "data/heimdall/npy.h"
#include "errors.h"
#include "common/json.h"

namespace heimdall {

namespace fs = std::filesystem;

namespace {

constexpr const char* kIqSuffix = "_iq.npy";
constexpr const char* kLabelSuffix = "_label.npy";

struct Manifest {
  double sample_rate = 192000.0;
  std::vector<Receiver> receivers;  // empty: not given
  double margin_deg = 0.5;
  const json::Value* features = nullptr;
  json::Value root;
};

Manifest read_manifest(const fs::path& path) {
  Manifest m;
  if (!fs::exists(path)) return m;
  const std::string p = path.string();
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    m.root = json::parse(ss.str());
  } catch (const std::exception& e) {
    throw Error(kErrFile, "manifest '" + p + "' is not valid JSON: " + e.what());
  }
  try {
    if (!m.root.is_object()) throw std::runtime_error("expected a JSON object");
    if (auto v = m.root.find("sample_rate")) m.sample_rate = v->as_number("sample_rate");
    if (!(m.sample_rate > 0)) throw std::runtime_error("sample_rate must be a positive number of Hz");
    if (auto v = m.root.find("margin_deg")) m.margin_deg = v->as_number("margin_deg");
    if (auto v = m.root.find("receivers")) {
      for (const auto& r : v->as_array("receivers")) {
        Receiver rx;
        if (!r.find("lat") || !r.find("lon")) throw std::runtime_error("receivers must be objects with lat and lon");
        rx.lat = r.find("lat")->as_number("receiver lat");
        rx.lon = r.find("lon")->as_number("receiver lon");
        if (auto a = r.find("alt")) rx.alt = a->as_number("receiver alt");
        if (auto n = r.find("name")) rx.name = n->as_string("receiver name");
        m.receivers.push_back(rx);
      }
    }
    m.features = m.root.find("features");
    if (m.features && !m.features->is_object()) throw std::runtime_error("features must be an object");
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(kErrFile, "manifest '" + p + "': " + e.what());
  }
  return m;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

}  // namespace

NpyDirectoryDataset::NpyDirectoryDataset(std::string dir, std::vector<Receiver> receivers, int64_t channels,
                                         PositionNormalization norm, MelConfig mel, DirectoryOptions options,
                                         std::vector<std::string> ids, std::vector<std::pair<double, double>> labels)
    : RfDataset(std::move(receivers), channels, norm, std::move(mel), options.augment, options.cache,
                options.cache_limit_bytes),
      dir_(std::move(dir)),
      ids_(std::move(ids)),
      labels_(std::move(labels)) {
  enable_cache();
}

std::string NpyDirectoryDataset::iq_path(int64_t i) const {
  return (fs::path(dir_) / (ids_[static_cast<size_t>(i)] + kIqSuffix)).string();
}

std::string NpyDirectoryDataset::describe() const {
  return "Heimdall data directory '" + dir_ + "', " + std::to_string(size()) + " samples";
}

at::Tensor NpyDirectoryDataset::compute_features(const std::vector<int64_t>& indices) const {
  const auto shape = input_shape();
  at::Tensor out = at::empty({static_cast<int64_t>(indices.size()), shape[0], shape[1], shape[2]}, at::kFloat);
  for (size_t k = 0; k < indices.size(); ++k) {
    const std::string path = iq_path(indices[k]);
    at::Tensor iq = read_npy(path, {"<c8"});
    if (iq.dim() == 1) iq = iq.unsqueeze(0);
    if (iq.dim() != 2 || iq.size(0) != channels_)
      throw Error(kErrShape, "'" + path + "' has shape " + shape_str(iq.sizes().vec()) + ", expected [" +
                                 std::to_string(channels_) + ", samples]");
    const int64_t bad = at::logical_not(at::isfinite(at::view_as_real(iq))).sum().item<int64_t>();
    if (bad > 0) {
      throw Error(kErrFile, "sample '" + ids_[static_cast<size_t>(indices[k])] + "': '" + path + "' holds " +
                                std::to_string(bad) + " NaN or Inf IQ value(s) (real or imaginary parts): fix or remove the file");
    }
    try {
      out[static_cast<int64_t>(k)].copy_(mel_(iq));
    } catch (const Error& e) {
      throw Error(e.code(), "'" + path + "': " + e.what());
    }
  }
  return out;
}

std::shared_ptr<NpyDirectoryDataset> open_npy_directory(const std::string& dir, DirectoryOptions options) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw Error(kErrFile, "data directory '" + dir + "' does not exist");
  if (!fs::is_directory(dir, ec)) throw Error(kErrFile, "data directory '" + dir + "' is not a directory");
  Manifest manifest = read_manifest(fs::path(dir) / "manifest.json");

  std::vector<std::string> ids;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && ends_with(name, kIqSuffix)) ids.push_back(name.substr(0, name.size() - std::string(kIqSuffix).size()));
  }
  if (ec) throw Error(kErrFile, "cannot list data directory '" + dir + "': " + ec.message());
  if (ids.empty()) throw Error(kErrFile, "data directory '" + dir + "' holds no <id>_iq.npy files");
  std::sort(ids.begin(), ids.end());

  MelConfig mel = options.mel;
  mel.sample_rate = manifest.sample_rate;
  if (manifest.features) {
    try {
      if (auto v = manifest.features->find("ref_db")) mel.ref_db = v->as_number("features.ref_db");
      if (auto v = manifest.features->find("scale_db")) mel.scale_db = v->as_number("features.scale_db");
      if (auto v = manifest.features->find("floor_db")) mel.floor_db = v->as_number("features.floor_db");
    } catch (const std::exception& e) {
      throw Error(kErrFile, "manifest '" + (fs::path(dir) / "manifest.json").string() + "': " + e.what());
    }
  }
  mel.validate();

  int64_t channels = -1;
  std::vector<std::pair<double, double>> labels;
  for (const auto& id : ids) {
    const std::string iq_path = (fs::path(dir) / (id + kIqSuffix)).string();
    const std::string label_path = (fs::path(dir) / (id + kLabelSuffix)).string();
    NpyHeader h = read_npy_header(iq_path);
    if (h.descr != "<c8")
      throw Error(kErrFile, "bad .npy file '" + iq_path + "': dtype is " + npy_dtype_name(h.descr) +
                                ", expected complex64 ('<c8') IQ");
    if (h.shape.size() != 1 && h.shape.size() != 2)
      throw Error(kErrFile, "bad .npy file '" + iq_path + "': shape " + shape_str(h.shape) +
                                ", expected [receivers, samples] or [samples]");
    const int64_t c = h.shape.size() == 2 ? h.shape[0] : 1;
    const int64_t s = h.shape.back();
    if (channels < 0) channels = c;
    if (c != channels)
      throw Error(kErrShape, "'" + iq_path + "' has " + std::to_string(c) + " receivers, the files before it " +
                                 std::to_string(channels));
    if (s <= mel.n_fft / 2)
      throw Error(kErrShape, "'" + iq_path + "' has " + std::to_string(s) + " samples; features need more than n_fft/2 = " +
                                 std::to_string(mel.n_fft / 2));
    if (!fs::exists(label_path))
      throw Error(kErrFile, "label file '" + label_path + "' is missing for '" + iq_path + "'");
    at::Tensor label = read_npy(label_path, {"<f4", "<f8"});
    if (label.numel() != 2)
      throw Error(kErrFile, "bad .npy file '" + label_path + "': shape " + shape_str(label.sizes().vec()) +
                                ", expected [2] (lat, lon)");
    label = label.reshape({2}).to(at::kDouble);
    const double lat = label[0].item<double>(), lon = label[1].item<double>();
    if (!std::isfinite(lat) || !std::isfinite(lon) || lat < -90 || lat > 90 || lon < -180 || lon > 360)
      throw Error(kErrFile, "bad label in '" + label_path + "': (" + std::to_string(lat) + ", " + std::to_string(lon) +
                                ") is not a (lat, lon) position in degrees");
    labels.emplace_back(lat, lon);
  }

  std::vector<Receiver> receivers = manifest.receivers;
  if (receivers.empty() && channels == static_cast<int64_t>(reference_receivers().size())) receivers = reference_receivers();
  if (!receivers.empty() && static_cast<int64_t>(receivers.size()) != channels)
    throw Error(kErrShape, "manifest '" + (fs::path(dir) / "manifest.json").string() + "' lists " +
                               std::to_string(receivers.size()) + " receivers but the IQ files have " +
                               std::to_string(channels));
  PositionNormalization norm;
  if (!receivers.empty()) {
    norm = PositionNormalization::of_box(bounding_box(receivers, manifest.margin_deg));
  } else {  // no receiver positions: the labels' own box
    std::vector<Receiver> pts;
    for (auto [lat, lon] : labels) pts.push_back({"", lat, lon, 0});
    norm = PositionNormalization::of_box(bounding_box(pts, manifest.margin_deg));
  }
  return std::make_shared<NpyDirectoryDataset>(dir, receivers, channels, norm, mel, options, ids, labels);
}

}  // namespace heimdall
