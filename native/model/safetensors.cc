#include "model/safetensors.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <unistd.h>

#include <ATen/ATen.h>

#include "errors.h"
#include "common/json.h"

namespace heimdall {

namespace {

struct DtypeName {
  at::ScalarType type;
  const char* name;
};
constexpr DtypeName kDtypes[] = {
    {at::kFloat, "F32"}, {at::kDouble, "F64"}, {at::kHalf, "F16"}, {at::kBFloat16, "BF16"},
    {at::kLong, "I64"},  {at::kInt, "I32"},    {at::kShort, "I16"}, {at::kChar, "I8"},
    {at::kByte, "U8"},   {at::kBool, "BOOL"},
};

const char* dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw Error(kErrInvalidArgument, std::string("safetensors: cannot store dtype ") + c10::toString(t));
}

at::ScalarType dtype_of(const std::string& name, const std::string& path) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  throw Error(kErrFile, path + ": unsupported safetensors dtype \"" + name + "\"");
}

}  // namespace

bool is_weight_key(const std::string& name) {
  for (const char* prefix : {"optimizer.", "rng.", "amp.", "current."})
    if (name.rfind(prefix, 0) == 0) return false;
  return true;
}

const at::Tensor* TensorFile::find(const std::string& name) const {
  for (const auto& [k, t] : tensors)
    if (k == name) return &t;
  return nullptr;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> cpu;
  cpu.reserve(tensors.size());
  json::Value header = json::Value::object();
  if (!metadata.empty()) {
    json::Value meta = json::Value::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (!t.defined()) throw Error(kErrInvalidArgument, "safetensors: tensor \"" + name + "\" is undefined");
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    json::Value entry = json::Value::object();
    entry["dtype"] = dtype_name(c.scalar_type());
    json::Value shape = json::Value::array();
    for (auto s : c.sizes()) shape.push_back(static_cast<int64_t>(s));
    entry["shape"] = shape;
    uint64_t bytes = c.numel() * c.element_size();
    json::Value offs = json::Value::array();
    offs.push_back(offset);
    offs.push_back(offset + bytes);
    entry["data_offsets"] = offs;
    if (header.has(name)) throw Error(kErrInvalidArgument, "safetensors: duplicate tensor name \"" + name + "\"");
    header[name] = entry;
    offset += bytes;
    cpu.push_back(std::move(c));
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text += ' ';

  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(kErrFile, "cannot write " + path + ": " + std::strerror(errno));
    uint64_t n = text.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xFF);
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& c : cpu)
      out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * c.element_size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw Error(kErrFile, "cannot write " + path + " (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(kErrFile, "cannot move the written file into place at " + path + ": " + std::strerror(errno));
  }
}

TensorFile load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(kErrFile, "cannot open " + path + ": " + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  if (file_size < 8) throw Error(kErrFile, path + " is not a safetensors file (shorter than 8 bytes)");
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  if (n > 100u * 1024 * 1024 || 8 + n > file_size)
    throw Error(kErrFile, path + " is not a safetensors file or is truncated (header length " + std::to_string(n) +
                              ", file size " + std::to_string(file_size) + ")");
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  json::Value header;
  try {
    header = json::parse(text);
  } catch (const std::exception& e) {
    throw Error(kErrFile, path + ": malformed safetensors header: " + e.what());
  }
  if (!header.is_object()) throw Error(kErrFile, path + ": malformed safetensors header (not an object)");

  const uint64_t data_start = 8 + n;
  const uint64_t data_size = file_size - data_start;
  TensorFile file;
  struct Pending {
    std::string name;
    std::vector<int64_t> shape;
    at::ScalarType dtype;
    uint64_t begin, end;
  };
  std::vector<Pending> pending;
  try {
    for (const auto& [name, entry] : header.as_object()) {
      if (name == "__metadata__") {
        for (const auto& [k, v] : entry.as_object("__metadata__")) file.metadata[k] = v.as_string("metadata value");
        continue;
      }
      at::ScalarType dtype = dtype_of(entry.at("dtype").as_string("dtype"), path);
      std::vector<int64_t> shape;
      for (const auto& s : entry.at("shape").as_array("shape")) shape.push_back(s.as_int("shape"));
      const auto& offs = entry.at("data_offsets").as_array("data_offsets");
      if (offs.size() != 2) throw std::runtime_error("data_offsets must have two entries");
      uint64_t b = offs[0].as_int("offset"), e = offs[1].as_int("offset");
      // The size the shape needs, checked before anything is allocated (a hostile header may claim any shape).
      uint64_t bytes = c10::elementSize(dtype);
      for (int64_t d : shape) {
        if (d < 0 || __builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes))
          throw std::runtime_error("tensor \"" + name + "\" has an invalid shape");
      }
      if (e < b || e - b != bytes)
        throw std::runtime_error("tensor \"" + name + "\" has " + std::to_string(e - b) + " bytes for shape needing " +
                                 std::to_string(bytes));
      if (e > data_size)
        throw Error(kErrFile, path + " is truncated: tensor \"" + name + "\" ends at byte " + std::to_string(data_start + e) +
                                  " but the file has " + std::to_string(file_size));
      pending.push_back({name, shape, dtype, b, e});
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(kErrFile, path + ": malformed safetensors header: " + e.what());
  }
  std::sort(pending.begin(), pending.end(), [](const Pending& a, const Pending& b) { return a.begin < b.begin; });
  // Byte ranges may not overlap: then the tensors together fit in the file, and memory stays bounded by its size.
  for (size_t i = 1; i < pending.size(); ++i) {
    if (pending[i].begin < pending[i - 1].end)
      throw Error(kErrFile, path + ": malformed safetensors header: tensors \"" + pending[i - 1].name + "\" and \"" +
                                pending[i].name + "\" overlap");
  }
  for (auto& p : pending) {
    at::Tensor t = at::empty(p.shape, at::TensorOptions().dtype(p.dtype));
    in.seekg(static_cast<std::streamoff>(data_start + p.begin));
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(p.end - p.begin));
    if (!in) throw Error(kErrFile, path + ": read failed for tensor \"" + p.name + "\" (truncated file?)");
    file.tensors.emplace_back(std::move(p.name), std::move(t));
  }
  return file;
}

}  // namespace heimdall
