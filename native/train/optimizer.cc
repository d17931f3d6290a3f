#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "errors.h"

namespace heimdall {

double scheduled_lr(const OptimizerOptions& opt, const ScheduleOptions& sched, int64_t step) {
  if (sched.warmup_steps > 0 && step < sched.warmup_steps)
    return opt.lr * static_cast<double>(step + 1) / static_cast<double>(sched.warmup_steps);
  if (sched.name == "constant" || sched.total_steps <= 0) return opt.lr;
  if (sched.name == "exponential") {  // the LR range test's sweep: min_lr at step 0 → lr at step total_steps
    const double t = std::min(1.0, static_cast<double>(step - sched.warmup_steps) / std::max<int64_t>(1, sched.total_steps - sched.warmup_steps));
    return sched.min_lr * std::pow(opt.lr / sched.min_lr, t);
  }
  const double span = std::max<int64_t>(1, sched.total_steps - sched.warmup_steps);
  const double t = std::min(1.0, static_cast<double>(step - sched.warmup_steps) / span);
  return sched.min_lr + (opt.lr - sched.min_lr) * 0.5 * (1.0 + std::cos(M_PI * t));
}

bool decays(const std::string& name, const at::Tensor& p) {
  if (p.dim() <= 1) return false;
  return !(name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0);
}

Optimizer::Optimizer(const std::vector<std::pair<std::string, at::Tensor>>& params, const OptimizerOptions& options)
    : options_(options) {
  if (options.name != "adamw" && options.name != "sgd")
    throw Error(kErrInvalidArgument, "unknown optimizer \"" + options.name + "\"; valid optimizers: adamw, sgd");
  if (!(options.lr > 0)) throw Error(kErrInvalidArgument, "learning rate must be > 0");
  if (options.weight_decay < 0) throw Error(kErrInvalidArgument, "weight decay must be ≥ 0");
  if (options.nesterov && (options.momentum <= 0 || options.dampening != 0))
    throw Error(kErrInvalidArgument, "nesterov needs momentum > 0 and zero dampening");
  for (const auto& [name, p] : params) slots_.push_back({name, p, {}, {}, {}, {}, decays(name, p)});
}

void Optimizer::ensure_state(Slot& s) {
  if (options_.name == "adamw" && !s.exp_avg.defined()) {
    s.exp_avg = at::zeros_like(s.param, at::MemoryFormat::Preserve);
    s.exp_avg_sq = at::zeros_like(s.param, at::MemoryFormat::Preserve);
    s.step = at::zeros({}, s.param.options().dtype(at::kFloat));
  }
}

void Optimizer::step(double lr) {
  c10::NoGradGuard no_grad;
  // One fused call per (weight decay, learning-rate factor) group.
  std::vector<double> scales;
  for (const auto& s : slots_)
    if (std::find(scales.begin(), scales.end(), s.lr_scale) == scales.end()) scales.push_back(s.lr_scale);
  for (double scale : scales) {
    for (int decay = 0; decay < 2; ++decay) {
      std::vector<at::Tensor> params, grads, m, v, steps, bufs;
      bool first_sgd_step = false;
      for (auto& s : slots_) {
        if (s.lr_scale != scale || s.decay != static_cast<bool>(decay) || !s.param.grad().defined()) continue;
        ensure_state(s);
        params.push_back(s.param);
        grads.push_back(s.param.grad());
        if (options_.name == "adamw") {
          m.push_back(s.exp_avg);
          v.push_back(s.exp_avg_sq);
          steps.push_back(s.step);
        } else if (options_.momentum > 0) {
          if (!s.momentum.defined()) {
            s.momentum = at::empty_like(s.param, at::MemoryFormat::Preserve);
            first_sgd_step = true;
          }
          bufs.push_back(s.momentum);
        }
      }
      if (params.empty()) continue;
      const double wd = decay ? options_.weight_decay : 0.0;
      if (options_.name == "adamw") {
        at::_foreach_add_(steps, 1);
        at::_fused_adamw_(params, grads, m, v, {}, steps, lr * scale, options_.beta1, options_.beta2, wd, options_.eps,
                          /*amsgrad=*/false, /*maximize=*/false);
      } else {
        at::_fused_sgd_(params, grads, bufs, wd, options_.momentum, lr * scale, options_.dampening, options_.nesterov,
                        /*maximize=*/false, first_sgd_step);
      }
    }
  }
}

void Optimizer::set_lr_scale(const std::vector<std::string>& names, double scale) {
  if (!(scale > 0)) throw Error(kErrInvalidArgument, "a learning-rate factor must be > 0");
  for (const auto& n : names) {
    auto it = std::find_if(slots_.begin(), slots_.end(), [&](const Slot& s) { return s.name == n; });
    if (it == slots_.end()) throw Error(kErrInvalidArgument, "the optimizer has no parameter " + n);
    it->lr_scale = scale;
  }
}

void Optimizer::zero_grad() {
  for (auto& s : slots_) s.param.mutable_grad() = at::Tensor();
}

std::vector<at::Tensor> Optimizer::grads() const {
  std::vector<at::Tensor> out;
  for (const auto& s : slots_)
    if (s.param.grad().defined()) out.push_back(s.param.grad());
  return out;
}

NamedTensors Optimizer::state() const {
  NamedTensors out;
  for (const auto& s : slots_) {
    if (s.exp_avg.defined()) {
      out.emplace_back("optimizer.exp_avg." + s.name, s.exp_avg);
      out.emplace_back("optimizer.exp_avg_sq." + s.name, s.exp_avg_sq);
      out.emplace_back("optimizer.step." + s.name, s.step);
    }
    if (s.momentum.defined()) out.emplace_back("optimizer.momentum." + s.name, s.momentum);
  }
  return out;
}

void Optimizer::load_state(const TensorFile& file) {
  stage_state(file)();
}

std::function<void()> Optimizer::stage_state(const TensorFile& file) const {
  c10::NoGradGuard no_grad;
  struct Staged {
    at::Tensor exp_avg, exp_avg_sq, step, momentum;
  };
  auto staged = std::make_shared<std::vector<Staged>>(slots_.size());
  auto take = [&](const std::string& slot, const Slot& s, at::Tensor& dst, const at::Tensor& like) {
    const at::Tensor* t = file.find("optimizer." + slot + "." + s.name);
    if (!t) return;
    if (t->sizes() != like.sizes())
      throw Error(kErrWeights, "checkpoint optimizer state \"" + slot + "." + s.name + "\" has shape " + c10::str(t->sizes()) +
                                   ", the model needs " + c10::str(like.sizes()));
    dst = t->to(like.device(), like.scalar_type()).contiguous(s.param.suggest_memory_format());
  };
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    Staged& n = (*staged)[i];
    take("exp_avg", s, n.exp_avg, s.param);
    take("exp_avg_sq", s, n.exp_avg_sq, s.param);
    const at::Tensor* st = file.find("optimizer.step." + s.name);
    if (st) {
      if (st->numel() != 1) throw Error(kErrFile, "checkpoint optimizer step for \"" + s.name + "\" is not one number");
      n.step = st->to(s.param.device(), at::kFloat).reshape({});
    }
    take("momentum", s, n.momentum, s.param);
    if (n.exp_avg.defined() != n.exp_avg_sq.defined() || n.exp_avg.defined() != n.step.defined())
      throw Error(kErrFile, "checkpoint optimizer state for \"" + s.name + "\" is incomplete");
  }
  return [this, staged]() {
    auto& slots = const_cast<std::vector<Slot>&>(slots_);
    for (size_t i = 0; i < slots.size(); ++i) {
      Staged& n = (*staged)[i];
      slots[i].exp_avg = n.exp_avg;
      slots[i].exp_avg_sq = n.exp_avg_sq;
      slots[i].step = n.step;
      slots[i].momentum = n.momentum;
    }
  };
}

}  // namespace heimdall
