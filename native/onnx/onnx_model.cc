#include "onnx/onnx_model.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <unistd.h>

#include "errors.h"

namespace heimdall::onnx {

using protobuf::Message;

// ---- attributes --------------------------------------------------------------------------------------

Attribute Attribute::of_int(std::string name, int64_t v) {
  Attribute a;
  a.name = std::move(name);
  a.type = Type::Int;
  a.i = v;
  return a;
}

Attribute Attribute::of_float(std::string name, float v) {
  Attribute a;
  a.name = std::move(name);
  a.type = Type::Float;
  a.f = v;
  return a;
}

Attribute Attribute::of_string(std::string name, std::string v) {
  Attribute a;
  a.name = std::move(name);
  a.type = Type::String;
  a.s = std::move(v);
  return a;
}

Attribute Attribute::of_ints(std::string name, std::vector<int64_t> v) {
  Attribute a;
  a.name = std::move(name);
  a.type = Type::Ints;
  a.ints = std::move(v);
  return a;
}

int64_t ir_version_for_opset(int64_t opset) {
  if (opset <= 17) return 8;
  if (opset <= 20) return 9;
  if (opset <= 22) return 10;
  return 11;
}

// ---- encoding (field numbers from onnx.proto) ---------------------------------------------------------

namespace {

Message encode_entry(const std::string& key, const std::string& value) {
  Message m;
  m.add_string(1, key);
  m.add_string(2, value);
  return m;
}

Message encode_tensor(const Tensor& t) {
  Message m;
  for (int64_t d : t.dims) m.add_int64(1, d);
  m.add_varint(2, static_cast<uint64_t>(t.data_type));
  m.add_string(8, t.name);
  if (t.external) {
    m.add_message(13, encode_entry("location", t.location));
    m.add_message(13, encode_entry("offset", std::to_string(t.offset)));
    m.add_message(13, encode_entry("length", std::to_string(t.bytes)));
    m.add_varint(14, 1);  // DataLocation.EXTERNAL
  } else {
    m.add_bytes_ref(9, t.data, t.bytes);
  }
  return m;
}

Message encode_attribute(const Attribute& a) {
  Message m;
  m.add_string(1, a.name);
  switch (a.type) {
    case Attribute::Type::Float: m.add_float(2, a.f); break;
    case Attribute::Type::Int: m.add_int64(3, a.i); break;
    case Attribute::Type::String: m.add_string(4, a.s); break;
    case Attribute::Type::Floats:
      for (float f : a.floats) m.add_float(7, f);
      break;
    case Attribute::Type::Ints:
      for (int64_t i : a.ints) m.add_int64(8, i);
      break;
  }
  m.add_varint(20, static_cast<uint64_t>(a.type));
  return m;
}

Message encode_node(const Node& n) {
  Message m;
  for (const auto& i : n.inputs) m.add_string(1, i);
  for (const auto& o : n.outputs) m.add_string(2, o);
  if (!n.name.empty()) m.add_string(3, n.name);
  m.add_string(4, n.op_type);
  for (const auto& a : n.attributes) m.add_message(5, encode_attribute(a));
  if (!n.domain.empty()) m.add_string(7, n.domain);
  return m;
}

Message encode_value_info(const ValueInfo& v) {
  Message shape;  // TensorShapeProto
  for (const auto& d : v.shape) {
    Message dim;
    if (!d.param.empty()) {
      dim.add_string(2, d.param);
    } else {
      dim.add_int64(1, d.value);
    }
    shape.add_message(1, std::move(dim));
  }
  Message tensor_type;  // TypeProto.Tensor
  tensor_type.add_varint(1, static_cast<uint64_t>(v.elem_type));
  tensor_type.add_message(2, std::move(shape));
  Message type;  // TypeProto
  type.add_message(1, std::move(tensor_type));
  Message m;
  m.add_string(1, v.name);
  m.add_message(2, std::move(type));
  return m;
}

Message encode_graph(const Graph& g) {
  Message m;
  for (const auto& n : g.nodes) m.add_message(1, encode_node(n));
  m.add_string(2, g.name);
  for (const auto& t : g.initializers) m.add_message(5, encode_tensor(t));
  for (const auto& v : g.inputs) m.add_message(11, encode_value_info(v));
  for (const auto& v : g.outputs) m.add_message(12, encode_value_info(v));
  return m;
}

}  // namespace

Message encode(const Model& model) {
  Message m;
  m.add_int64(1, model.ir_version);
  if (!model.producer_name.empty()) m.add_string(2, model.producer_name);
  if (!model.producer_version.empty()) m.add_string(3, model.producer_version);
  m.add_int64(5, model.model_version);
  if (!model.doc_string.empty()) m.add_string(6, model.doc_string);
  m.add_message(7, encode_graph(model.graph));
  for (const auto& [domain, version] : model.opset_imports) {
    Message op;
    op.add_string(1, domain);
    op.add_int64(2, version);
    m.add_message(8, std::move(op));
  }
  for (const auto& e : model.metadata_props) m.add_message(14, encode_entry(e.key, e.value));
  return m;
}

// ---- files ---------------------------------------------------------------------------------------------

namespace {

std::string base_name(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string temp_name(const std::string& path) { return path + ".tmp-" + std::to_string(::getpid()); }

void fail(const std::string& what, const std::string& path) {
  throw Error(kErrFile, "cannot " + what + " " + path + ": " + std::strerror(errno));
}

void check_stream(std::ofstream& out, const std::string& tmp) {
  out.flush();
  if (!out) {
    std::remove(tmp.c_str());
    throw Error(kErrFile, "writing " + tmp + " failed (disk full?)");
  }
}

}  // namespace

WriteResult write_model(Model& model, const std::string& path, const WriteOptions& options) {
  WriteResult result;
  uint64_t total = 0;
  for (const auto& t : model.graph.initializers) total += t.bytes;

  std::string data_tmp;
  if (total > options.external_threshold) {
    result.data_path = path + ".data";
    const std::string location = base_name(result.data_path);
    data_tmp = temp_name(result.data_path);
    std::ofstream data(data_tmp, std::ios::binary | std::ios::trunc);
    if (!data) fail("create", data_tmp);
    const std::string zeros(options.external_alignment, '\0');
    uint64_t offset = 0;
    for (auto& t : model.graph.initializers) {
      if (t.bytes < options.external_min_bytes) continue;
      const uint64_t pad = options.external_alignment > 1 ? (options.external_alignment - offset % options.external_alignment) %
                                                              options.external_alignment
                                                        : 0;
      data.write(zeros.data(), static_cast<std::streamsize>(pad));
      offset += pad;
      data.write(static_cast<const char*>(t.data), static_cast<std::streamsize>(t.bytes));
      t.external = true;
      t.location = location;
      t.offset = offset;
      offset += t.bytes;
      ++result.external_tensors;
    }
    check_stream(data, data_tmp);
    result.data_bytes = offset;
  }

  const Message encoded = encode(model);
  if (encoded.size() > (uint64_t{2} << 30) - 1) {
    if (!data_tmp.empty()) std::remove(data_tmp.c_str());
    throw Error(kErrInvalidArgument, "the ONNX graph of " + path + " would be " + std::to_string(encoded.size()) +
                                         " bytes, over protobuf's 2 GiB limit; lower the external-data threshold");
  }
  const std::string model_tmp = temp_name(path);
  {
    std::ofstream out(model_tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      if (!data_tmp.empty()) std::remove(data_tmp.c_str());
      fail("create", model_tmp);
    }
    encoded.write_to(out);
    check_stream(out, model_tmp);
  }
  result.model_bytes = encoded.size();
  if (!data_tmp.empty() && std::rename(data_tmp.c_str(), result.data_path.c_str()) != 0) {
    std::remove(data_tmp.c_str());
    std::remove(model_tmp.c_str());
    fail("rename into", result.data_path);
  }
  if (std::rename(model_tmp.c_str(), path.c_str()) != 0) {
    std::remove(model_tmp.c_str());
    fail("rename into", path);
  }
  return result;
}

}  // namespace heimdall::onnx
