// The ONNX messages the exporter writes (onnx.proto, proto2), as plain structs, and their encoding.
// Only the fields we use. Field numbers are those of onnx/onnx.proto.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "onnx/protobuf.h"

namespace heimdall::onnx {

// TensorProto.DataType
enum class DataType : int32_t { Float = 1, Int64 = 7 };

struct StringEntry {  // StringStringEntryProto
  std::string key, value;
};

// TensorProto with its data either inline (raw_data) or in an external file. The bytes are referenced, not
// owned: `keepalive` holds whatever owns them (a tensor) for as long as the model lives.
struct Tensor {
  std::string name;
  DataType data_type = DataType::Float;
  std::vector<int64_t> dims;
  const void* data = nullptr;
  size_t bytes = 0;
  std::shared_ptr<const void> keepalive;
  // External data (set by write_model when the model is too large for one file).
  bool external = false;
  std::string location;
  uint64_t offset = 0;
};

struct Attribute {  // AttributeProto
  enum class Type : int32_t { Float = 1, Int = 2, String = 3, Floats = 6, Ints = 7 };
  std::string name;
  Type type = Type::Int;
  float f = 0;
  int64_t i = 0;
  std::string s;
  std::vector<float> floats;
  std::vector<int64_t> ints;

  static Attribute of_int(std::string name, int64_t v);
  static Attribute of_float(std::string name, float v);
  static Attribute of_string(std::string name, std::string v);
  static Attribute of_ints(std::string name, std::vector<int64_t> v);
};

struct Node {  // NodeProto
  std::string name, op_type, domain;
  std::vector<std::string> inputs, outputs;
  std::vector<Attribute> attributes;
};

// ValueInfoProto of a tensor: each dim is a fixed size or a symbolic name ("batch").
struct Dim {
  int64_t value = -1;
  std::string param;  // used when non-empty
};
struct ValueInfo {
  std::string name;
  DataType elem_type = DataType::Float;
  std::vector<Dim> shape;
};

struct Graph {  // GraphProto
  std::string name;
  std::vector<Node> nodes;
  std::vector<Tensor> initializers;
  std::vector<ValueInfo> inputs, outputs;
};

struct Model {  // ModelProto
  int64_t ir_version = 8;
  std::vector<std::pair<std::string, int64_t>> opset_imports;  // domain ("" = ai.onnx), version
  std::string producer_name, producer_version, doc_string;
  int64_t model_version = 0;
  Graph graph;
  std::vector<StringEntry> metadata_props;
};

// The IR version that goes with an ai.onnx opset (opset 17 → 8, 19–20 → 9, 21–22 → 10, 23 → 11, …).
int64_t ir_version_for_opset(int64_t opset);

protobuf::Message encode(const Model& model);

struct WriteOptions {
  // Above this many bytes of initializer data, tensors of at least `external_min_bytes` go to a side file
  // "<model file name>.data" next to the model (ONNX external data), since protobuf caps a file at 2 GiB.
  uint64_t external_threshold = (uint64_t{2} << 30) - (uint64_t{64} << 20);
  uint64_t external_min_bytes = 1024;
  uint64_t external_alignment = 4096;  // offsets aligned so runtimes can memory-map the side file
};

struct WriteResult {
  uint64_t model_bytes = 0;
  std::string data_path;  // empty when everything is inline
  uint64_t data_bytes = 0;
  size_t external_tensors = 0;
};

// Writes atomically: temporary files next to `path`, renamed into place once complete. Marks the
// model's tensors external where needed (hence non-const). Throws heimdall::Error(kErrFile) on I/O errors.
WriteResult write_model(Model& model, const std::string& path, const WriteOptions& options = {});

}  // namespace heimdall::onnx
