#include "onnx/graph_builder.h"

#include <cmath>
#include <cstdio>
#include <memory>

#include <ATen/ATen.h>

#include "errors.h"

namespace heimdall::onnx {

namespace {
std::string shape_string(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}
}  // namespace

// ---- weights: the state dict, checked tensor by tensor against what the layers need -------------------

Weights::Weights(const std::vector<std::pair<std::string, at::Tensor>>& state_dict, std::string owner)
    : owner_(std::move(owner)) {
  for (const auto& [name, t] : state_dict) tensors_[name] = t;
}

at::Tensor Weights::get(const std::string& name, at::IntArrayRef shape) {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    throw Error(kErrWeights, "the weights lack \"" + name + "\", which a " + owner_ +
                                 " needs (weights of another variant or head?)");
  const at::Tensor& t = it->second;
  if (t.sizes() != shape)
    throw Error(kErrWeights, "\"" + name + "\" has shape " + shape_string(t.sizes()) + " but a " + owner_ + " needs " +
                                 shape_string(shape) + " (weights of another variant, head or inChans?)");
  at::Tensor c = t.detach();
  if (!c.device().is_cpu()) c = c.cpu();
  if (c.scalar_type() != at::kFloat) c = c.to(at::kFloat);
  c = c.contiguous();
  if (!c.isfinite().all().item<bool>())  // a NaN in a checkpoint is a bug to report, not to export
    throw Error(kErrWeights, "\"" + name + "\" holds NaN or infinite values");
  if (used_.insert(name).second) parameters_ += c.numel();
  return c;
}

void Weights::check_all_used() const {
  std::vector<std::string> extra;
  const std::string counter = "num_batches_tracked";
  for (const auto& [name, _] : tensors_)
    if (!used_.count(name) && !(name.size() >= counter.size() && name.compare(name.size() - counter.size(), counter.size(), counter) == 0))
      extra.push_back(name);
  if (extra.empty()) return;
  std::string list;
  for (size_t i = 0; i < extra.size() && i < 5; ++i) list += (i ? ", " : "") + extra[i];
  if (extra.size() > 5) list += ", … (" + std::to_string(extra.size()) + " in all)";
  throw Error(kErrWeights, "the weights hold tensors a " + owner_ + " does not have: " + list +
                               " (weights of another variant or head?)");
}

// ---- the graph ------------------------------------------------------------------------------------------

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

std::string GraphBuilder::initializer(const std::string& name, const at::Tensor& t, std::vector<int64_t> dims) {
  auto owner = std::make_shared<at::Tensor>(t);
  Tensor out;
  out.name = name;
  out.data_type = DataType::Float;
  out.dims = std::move(dims);
  out.data = owner->data_ptr();
  out.bytes = static_cast<size_t>(owner->numel()) * sizeof(float);
  out.keepalive = owner;
  return initializer(std::move(out));
}

std::string GraphBuilder::param(const std::string& name, const at::Tensor& like) {
  return initializer(name, weight(name, like), like.sizes().vec());
}

std::string GraphBuilder::reduce(const std::string& scope, const std::string& op, const std::string& x,
                                 const std::vector<int64_t>& axes, bool keepdims) {
  const Attribute keep = Attribute::of_int("keepdims", keepdims ? 1 : 0);
  if (options_.opset >= 18) return add(scope, op, {x, int64s(axes)}, {keep});
  return add(scope, op, {x}, {Attribute::of_ints("axes", axes), keep});
}

std::string GraphBuilder::gelu(const std::string& scope, const std::string& x) {
  if (options_.gelu_op) return add(scope, "Gelu", {x}, {Attribute::of_string("approximate", "none")});
  auto erf = add(scope, "Erf", {add(scope, "Div", {x, scalar(static_cast<float>(std::sqrt(2.0)))})});
  auto one_plus = add(scope, "Add", {erf, scalar(1.0f)});
  return add(scope, "Mul", {add(scope, "Mul", {x, one_plus}), scalar(0.5f)});
}

std::string GraphBuilder::to_nhwc(const std::string& scope, const std::string& x) {
  return add(scope, "Transpose", {x}, {Attribute::of_ints("perm", {0, 2, 3, 1})});
}

std::string GraphBuilder::to_nchw(const std::string& scope, const std::string& x) {
  return add(scope, "Transpose", {x}, {Attribute::of_ints("perm", {0, 3, 1, 2})});
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
