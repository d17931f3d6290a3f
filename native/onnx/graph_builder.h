// A small helper to build an onnx::Graph: add a node, add an initializer, get a shared constant.
// Node and value names come from a scope (the state_dict prefix of the layer, e.g. "stages.1.blocks.0.mlp")
// and the op type, so a graph viewer shows where each node belongs.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "onnx/onnx_model.h"

namespace heimdall::onnx {

class GraphBuilder {
 public:
  explicit GraphBuilder(Graph& graph) : graph_(graph) {}

  // Adds `op` reading `inputs`; returns the name of its single output.
  std::string add(const std::string& scope, const std::string& op, std::vector<std::string> inputs,
                  std::vector<Attribute> attributes = {});
  // Adds a node whose last output gets a fixed name (a graph output such as "positions").
  void add_named(const std::string& scope, const std::string& op, std::vector<std::string> inputs,
                 const std::string& output, std::vector<Attribute> attributes = {});

  // Adds an initializer; returns its name.
  std::string initializer(Tensor tensor);
  // Shared constants, one initializer per value: a float scalar, or an int64 vector.
  std::string scalar(float value);
  std::string int64s(const std::vector<int64_t>& values);

  size_t node_count() const { return graph_.nodes.size(); }

 private:
  std::string unique(const std::string& base);

  Graph& graph_;
  std::map<std::string, int> used_;
  std::map<float, std::string> scalars_;
  std::map<std::vector<int64_t>, std::string> int64s_;
};

}  // namespace heimdall::onnx
