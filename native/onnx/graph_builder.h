// A small helper to build an onnx::Graph from a model: add a node, add an initializer, get a shared constant, and
// take a layer's weights from a state dict (Weights) checked against the layer's own tensors.
// Node and value names come from a scope (the state_dict prefix of the layer, e.g. "stages.1.blocks.0.mlp")
// and the op type, so a graph viewer shows where each node belongs. Layers write their own nodes through it
// (`emit_onnx(GraphBuilder&, scope, x)` in native/model/): this file knows no model.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "onnx/onnx_model.h"

namespace heimdall::onnx {

// The tensors of a state dict, handed out by name to the layers that need them and checked against the shape the
// layer has. `owner` names the network in errors ("convnext_atto network of this head").
class Weights {
 public:
  Weights(const std::vector<std::pair<std::string, at::Tensor>>& state_dict, std::string owner);

  // The tensor `name` as contiguous float32 on the CPU; throws kErrWeights when absent, of another shape or not finite.
  at::Tensor get(const std::string& name, at::IntArrayRef shape);
  // Throws kErrWeights naming the tensors no layer asked for (BatchNorm's num_batches_tracked aside).
  void check_all_used() const;
  int64_t parameters() const { return parameters_; }

 private:
  std::string owner_;
  std::map<std::string, at::Tensor> tensors_;
  std::set<std::string> used_;
  int64_t parameters_ = 0;
};

struct EmitOptions {
  int64_t opset = 17;
  bool gelu_op = false;  // the Gelu op (opset ≥ 20) instead of x·½·(1 + erf(x/√2))
};

class GraphBuilder {
 public:
  GraphBuilder(Graph& graph, Weights& weights, EmitOptions options = {})
      : graph_(graph), weights_(weights), options_(options) {}

  // Adds `op` reading `inputs`; returns the name of its single output.
  std::string add(const std::string& scope, const std::string& op, std::vector<std::string> inputs,
                  std::vector<Attribute> attributes = {});
  // Adds a node whose last output gets a fixed name (a graph output such as "positions").
  void add_named(const std::string& scope, const std::string& op, std::vector<std::string> inputs,
                 const std::string& output, std::vector<Attribute> attributes = {});

  // Adds an initializer; returns its name.
  std::string initializer(Tensor tensor);
  // A float32 CPU tensor as an initializer named `name` with `dims`.
  std::string initializer(const std::string& name, const at::Tensor& t, std::vector<int64_t> dims);
  // The state-dict tensor `name`, of the shape of `like` (the layer's own tensor), as an initializer of that name.
  std::string param(const std::string& name, const at::Tensor& like);
  // The state-dict tensor `name` itself, for layers that write it transformed (transposed, reshaped).
  at::Tensor weight(const std::string& name, const at::Tensor& like) { return weights_.get(name, like.sizes()); }
  // Shared constants, one initializer per value: a float scalar, or an int64 vector.
  std::string scalar(float value);
  std::string int64s(const std::vector<int64_t>& values);

  // Ops whose form depends on the opset: ReduceMean / ReduceL2 over `axes` (an input from opset 18, else an attribute).
  std::string reduce(const std::string& scope, const std::string& op, const std::string& x, const std::vector<int64_t>& axes,
                     bool keepdims);
  // Exact GELU: x·½·(1 + erf(x/√2)), or the Gelu op.
  std::string gelu(const std::string& scope, const std::string& x);
  std::string to_nhwc(const std::string& scope, const std::string& x);
  std::string to_nchw(const std::string& scope, const std::string& x);

  const EmitOptions& options() const { return options_; }
  size_t node_count() const { return graph_.nodes.size(); }

 private:
  std::string unique(const std::string& base);

  Graph& graph_;
  Weights& weights_;
  EmitOptions options_;
  std::map<std::string, int> used_;
  std::map<float, std::string> scalars_;
  std::map<std::vector<int64_t>, std::string> int64s_;
};

}  // namespace heimdall::onnx
