// AdamW and SGD over libtorch's fused multi-tensor kernels (one kernel launch per parameter group rather
// than a loop over parameters), with timm's weight-decay rule, and the cosine schedule with linear warmup.
#pragma once

#include <optional>
#include <functional>
#include <string>
#include <vector>

#include "model/safetensors.h"

namespace heimdall {

// The defaults below are for C++ callers; they equal lib/config.ts' optimizerSchema and scheduleSchema, which
// the JavaScript binding always sends complete (native/napi/engine_binding.cc takes no default of its own).
struct OptimizerOptions {
  std::string name = "adamw";  // "adamw" | "sgd"
  double lr = 1e-3;
  double weight_decay = 1e-5;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // AdamW
  double momentum = 0.9, dampening = 0.0;          // SGD
  bool nesterov = false;
};

struct ScheduleOptions {
  std::string name = "cosine";  // "cosine" | "constant" | "exponential" (min_lr → lr over total_steps: the LR range test)
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;      // 0: set from the first epoch's length × maxEpochs
  double min_lr = 1e-6;
};

// Learning rate at optimizer step `step` (0-based): linear warmup to lr, then cosine decay to min_lr.
double scheduled_lr(const OptimizerOptions& opt, const ScheduleOptions& sched, int64_t step);

// timm's rule: no weight decay on 1-D parameters (norms, biases, layer scale γ).
bool decays(const std::string& name, const at::Tensor& p);

class Optimizer {
 public:
  Optimizer(const std::vector<std::pair<std::string, at::Tensor>>& params, const OptimizerOptions& options);

  // Steps every parameter that has a gradient.
  void step(double lr);
  void zero_grad();  // sets gradients to none
  std::vector<at::Tensor> grads() const;  // defined gradients of all parameters

  NamedTensors state() const;                    // "optimizer.<slot>.<parameter name>"
  void load_state(const TensorFile& file);       // tensors of another shape or parameter set → Error
  // Checks the file's optimizer state and returns what installs it: nothing changes until the returned function
  // runs (so that a checkpoint refused halfway leaves the optimizer as it was).
  std::function<void()> stage_state(const TensorFile& file) const;
  const OptimizerOptions& options() const { return options_; }
  // A learning-rate factor for the named parameters (BackboneFinetuning: the backbone's rate is a fraction of the
  // schedule's); 1 by default. Parameters without a gradient (frozen) are not stepped whatever their factor.
  void set_lr_scale(const std::vector<std::string>& names, double scale);

 private:
  struct Slot {
    std::string name;
    at::Tensor param, exp_avg, exp_avg_sq, step, momentum;
    bool decay;
    double lr_scale = 1.0;
  };
  void ensure_state(Slot& s);

  OptimizerOptions options_;
  std::vector<Slot> slots_;
};

}  // namespace heimdall
