#include "onnx/graph_builder.h"

#include <cstdio>
#include <memory>

namespace heimdall::onnx {

std::string GraphBuilder::unique(const std::string& base) {
  int& n = used_[base];
  std::string name = n == 0 ? base : base + "_" + std::to_string(n);
  ++n;
  return name;
}

std::string GraphBuilder::add(const std::string& scope, const std::string& op, std::vector<std::string> inputs,
                              std::vector<Attribute> attributes) {
  Node node;
  node.name = unique(scope + "/" + op);
  node.op_type = op;
  node.inputs = std::move(inputs);
  node.outputs = {node.name + "_output"};
  node.attributes = std::move(attributes);
  std::string out = node.outputs[0];
  graph_.nodes.push_back(std::move(node));
  return out;
}

void GraphBuilder::add_named(const std::string& scope, const std::string& op, std::vector<std::string> inputs,
                             const std::string& output, std::vector<Attribute> attributes) {
  Node node;
  node.name = unique(scope + "/" + op);
  node.op_type = op;
  node.inputs = std::move(inputs);
  node.outputs = {output};
  node.attributes = std::move(attributes);
  graph_.nodes.push_back(std::move(node));
}

std::string GraphBuilder::initializer(Tensor tensor) {
  graph_.initializers.push_back(std::move(tensor));
  return graph_.initializers.back().name;
}

std::string GraphBuilder::scalar(float value) {
  auto it = scalars_.find(value);
  if (it != scalars_.end()) return it->second;
  auto data = std::make_shared<float>(value);
  char label[48];
  std::snprintf(label, sizeof label, "const/%.9g", value);
  Tensor t;
  t.name = unique(label);
  t.data_type = DataType::Float;
  t.data = data.get();
  t.bytes = sizeof(float);
  t.keepalive = data;
  std::string name = initializer(std::move(t));
  scalars_[value] = name;
  return name;
}

std::string GraphBuilder::int64s(const std::vector<int64_t>& values) {
  auto it = int64s_.find(values);
  if (it != int64s_.end()) return it->second;
  auto data = std::make_shared<std::vector<int64_t>>(values);
  std::string label = "const/int64";
  for (int64_t v : values) label.append("_").append(std::to_string(v));
  Tensor t;
  t.name = unique(label);
  t.data_type = DataType::Int64;
  t.dims = {static_cast<int64_t>(values.size())};
  t.data = data->data();
  t.bytes = values.size() * sizeof(int64_t);
  t.keepalive = data;
  std::string name = initializer(std::move(t));
  int64s_[values] = name;
  return name;
}

}  // namespace heimdall::onnx
