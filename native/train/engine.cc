#include "train/engine.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <optional>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/autograd.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/version.h>

#include "data/tensor_dataset.h"
#include "errors.h"
#include "common/json.h"
#include "common/threads.h"
#include "train/loader.h"

namespace heimdall {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Enables autocast for one device type on this thread for the guard's lifetime.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType type, at::ScalarType dtype, bool enabled) : type_(type), enabled_(enabled) {
    if (!enabled_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(type_);
    prev_dtype_ = at::autocast::get_autocast_dtype(type_);
    at::autocast::set_autocast_enabled(type_, true);
    at::autocast::set_autocast_dtype(type_, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(type_, prev_enabled_);
    at::autocast::set_autocast_dtype(type_, prev_dtype_);
  }

 private:
  c10::DeviceType type_;
  bool enabled_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kFloat;
};

std::string shape_str(const std::vector<int64_t>& s) { return c10::str(c10::IntArrayRef(s)); }

}  // namespace

std::string torch_version() { return TORCH_VERSION; }

Precision parse_precision(const std::string& s) {
  if (s == "32" || s == "32-true" || s == "fp32") return Precision::Fp32;
  if (s == "bf16-mixed" || s == "bf16") return Precision::Bf16Mixed;
  if (s == "16-mixed" || s == "fp16") return Precision::Fp16Mixed;
  throw Error(kErrInvalidArgument, "unknown precision \"" + s + "\"; valid: 32, bf16-mixed, 16-mixed");
}

c10::Device resolve_device(const std::string& spec) {
  const bool has_cuda = at::hasCUDA() && at::detail::getCUDAHooks().getNumGPUs() > 0;
  if (spec == "auto") return has_cuda ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  if (spec == "cpu") return c10::Device(c10::kCPU);
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (spec.size() > 5) {
      try {
        size_t used = 0;
        index = std::stoi(spec.substr(5), &used);
        if (used != spec.size() - 5 || index < 0) throw std::invalid_argument("index");
      } catch (const std::exception&) {
        throw Error(kErrInvalidArgument, "device \"" + spec + "\" is not valid; use cpu, cuda, cuda:N or auto");
      }
    }
    if (!has_cuda) {
      throw Error(kErrDevice, std::string("device \"") + spec + "\" was requested but no CUDA device is available (" +
                                  (at::hasCUDA() ? "libtorch has CUDA support but sees no GPU"
                                                 : "this libtorch is a CPU-only build") +
                                  "); use device: 'cpu' or 'auto'");
    }
    const int count = at::detail::getCUDAHooks().getNumGPUs();
    if (index >= count)
      throw Error(kErrDevice, "device \"" + spec + "\" does not exist: " + std::to_string(count) + " CUDA device(s) visible");
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw Error(kErrInvalidArgument, "device \"" + spec + "\" is not valid; use cpu, cuda, cuda:N or auto");
}

static void apply_algorithm_flags(const std::string& deterministic, const std::string& benchmark, bool cuda) {
  auto& ctx = at::globalContext();
  if (deterministic != "keep") {
    if (deterministic != "on" && deterministic != "off" && deterministic != "warn")
      throw Error(kErrInvalidArgument, "deterministic must be keep, on, off or warn (got '" + deterministic + "')");
    const bool on = deterministic != "off";
    // cuBLAS is deterministic only with a fixed workspace; the variable must be set before cuBLAS's first use.
    if (on && cuda) setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
    ctx.setDeterministicAlgorithms(on, /*warn_only=*/deterministic == "warn");
    ctx.setDeterministicCuDNN(on);
  }
  if (benchmark != "keep") {
    if (benchmark != "on" && benchmark != "off") throw Error(kErrInvalidArgument, "benchmark must be keep, on or off (got '" + benchmark + "')");
    ctx.setBenchmarkCuDNN(benchmark == "on");
  }
}

struct Engine::PausedEpoch {
  DatasetPtr data;
  int64_t batch_size = 0, max_batches = -1, epoch = 0, batch = 0;
  bool shuffle = true;
  std::unique_ptr<Loader> loader;
  MetricAccumulator acc;
  double seconds = 0, sync_seconds = 0;
};

Engine::~Engine() = default;

Engine::Engine(Network network, const EngineOptions& options)
    : network_(std::move(network)), options_(options), device_(resolve_device(options.device)) {
  const HeadKind head = network_->options().head.kind;
  if (options_.loss == "auto") {
    loss_ = head == HeadKind::Localization ? LossKind::GaussianNll
            : head == HeadKind::Classification ? LossKind::CrossEntropy
                                               : LossKind::Mse;
  } else {
    loss_ = parse_loss(options_.loss);
  }
  if (loss_ == LossKind::GaussianNll && head != HeadKind::Localization)
    throw Error(kErrInvalidArgument, "loss gaussian_nll needs the localization head");
  if (loss_ == LossKind::CrossEntropy && head != HeadKind::Classification)
    throw Error(kErrInvalidArgument, "loss cross_entropy needs the classification head");
  precision_ = parse_precision(options_.precision);
  if (precision_ == Precision::Fp16Mixed && device_.type() != c10::kCUDA)
    throw Error(kErrInvalidArgument, "precision 16-mixed needs a CUDA device; use bf16-mixed or 32 on CPU");
  if (options_.accumulate < 1) throw Error(kErrInvalidArgument, "accumulate must be ≥ 1");
  if (options_.swa && options_.ema_decay > 0)
    throw Error(kErrInvalidArgument, "EMA and SWA both average the weights: use one of EMAWeightAveraging and StochasticWeightAveraging");
  if (options_.grad_clip_norm < 0) throw Error(kErrInvalidArgument, "gradClipNorm must be ≥ 0");
  if (options_.label_smoothing < 0 || options_.label_smoothing >= 1)
    throw Error(kErrInvalidArgument, "labelSmoothing must be in [0, 1)");

  apply_algorithm_flags(options_.deterministic, options_.benchmark, device_.is_cuda());
  at::manual_seed(options_.seed);
  network_->to(device_);
  if (options_.channels_last) {
    c10::NoGradGuard g;
    for (auto& p : network_->parameters())
      if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
  }
  // Every parameter has its slot; frozen ones (no gradient) are not stepped, and start stepping when unfrozen.
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& p : network_->named_parameters()) params.emplace_back(p.key(), p.value());
  optimizer_ = std::make_unique<Optimizer>(params, options_.optimizer);
  if (precision_ == Precision::Fp16Mixed) {
    amp_scale_ = at::full({1}, 65536.0f, at::TensorOptions().device(device_));
    amp_growth_ = at::zeros({1}, at::TensorOptions().device(device_).dtype(at::kInt));
  }
}

int Engine::intraop_threads() const { return options_.threads > 0 ? options_.threads : default_intraop_threads(); }

bool Engine::background_loading(const Dataset& data) const {
  // CUDA: the GPU computes while the CPU prepares the next batch. CPU: in-memory batches are gathered between
  // steps on this thread (see train/loader.h); computed or file-backed ones are prefetched on a helper thread.
  return device_.is_cuda() || !data.in_memory();
}

double Engine::current_lr() const {
  return lr_override_ > 0 ? lr_override_ : scheduled_lr(options_.optimizer, options_.schedule, step_);
}

void Engine::check_input(const Dataset& data) const {
  const auto in = data.input_shape();
  const auto& o = network_->options();
  const int64_t c = o.backbone.in_chans;
  if (in.size() != 3 || in[0] != c || in[1] < 32 || in[2] < 32) {
    throw Error(kErrShape, "the data set's samples have shape " + shape_str(in) + " but " + o.backbone.variant +
                               " with inChans " + std::to_string(c) + " needs [" + std::to_string(c) +
                               ", H ≥ 32, W ≥ 32] (" + data.describe() + ")");
  }
  const auto t = data.target_shape();
  switch (o.head.kind) {
    case HeadKind::Localization:
      if (t != std::vector<int64_t>{2})
        throw Error(kErrShape, "the localization head needs targets of shape [2] (lat, lon) per sample, got " + shape_str(t));
      break;
    case HeadKind::Classification:
      if (!t.empty() || at::isFloatingType(data.target_dtype()))
        throw Error(kErrShape, "the classification head needs integer class indices (one per sample), got " +
                                   std::string(c10::toString(data.target_dtype())) + " targets of shape " + shape_str(t));
      break;
    case HeadKind::Regression:
      if (t != std::vector<int64_t>{o.head.outputs})
        throw Error(kErrShape, "the regression head needs targets of shape [" + std::to_string(o.head.outputs) +
                                   "] per sample, got " + shape_str(t));
      break;
  }
}

at::Tensor Engine::to_device(const at::Tensor& t, bool is_input) const {
  at::Tensor out = t.to(device_, /*non_blocking=*/t.is_pinned());
  if (is_input && options_.channels_last && out.dim() == 4) out = out.contiguous(at::MemoryFormat::ChannelsLast);
  return out;
}

std::vector<at::Tensor> Engine::forward(const at::Tensor& input) {
  AutocastGuard guard(device_.type(), precision_ == Precision::Fp16Mixed ? at::kHalf : at::kBFloat16,
                      precision_ != Precision::Fp32);
  return network_->forward(input);
}

namespace {
// A sum over the ranks that autograd can go through: its backward sums the incoming gradients over the ranks too
// (every rank's loss depends on every rank's contribution). Collective in forward and in backward.
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, Group* group) {
    ctx->saved_data["group"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(group));
    return group->allreduce_sum(x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto* group = reinterpret_cast<Group*>(static_cast<intptr_t>(ctx->saved_data["group"].toInt()));
    return {group->allreduce_sum(grads[0]), at::Tensor()};
  }
};
}  // namespace

void Engine::set_group(GroupPtr group) {
  group_ = std::move(group);
  paused_.reset();
  if (options_.sync_batchnorm && distributed()) {
    Group* g = group_.get();  // the engine holds the group as long as the network may call this
    network_->set_batch_stats_reducer([g](const at::Tensor& x) { return AllReduceSum::apply(x, g); });
  } else {
    network_->set_batch_stats_reducer(nullptr);
  }
  if (!distributed()) return;
  std::vector<at::Tensor> state;
  for (const auto& p : network_->parameters()) state.push_back(p.data());
  for (const auto& b : network_->buffers()) state.push_back(b);
  group_->broadcast(state, 0);
}

// Every trainable parameter takes part (a zero gradient where backward left none), so that all ranks
// reduce the same buckets; the mean over ranks equals the gradient of the mean loss over all ranks' samples.
void Engine::sync_gradients() {
  std::vector<at::Tensor> grads;
  for (auto& [name, p] : network_->trainable_parameters()) {
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    grads.push_back(p.grad());
  }
  const auto t0 = Clock::now();
  group_->allreduce_mean(grads);
  sync_seconds_ += seconds_since(t0);
}

void Engine::optimizer_step() {
  if (distributed()) sync_gradients();
  bool skip = false;
  at::Tensor found_inf;
  std::vector<at::Tensor> grads;
  if (precision_ == Precision::Fp16Mixed || options_.grad_clip_norm > 0) grads = optimizer_->grads();
  if (precision_ == Precision::Fp16Mixed) {
    found_inf = at::zeros({1}, at::TensorOptions().device(device_));
    if (!grads.empty()) at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, amp_scale_.reciprocal());
    skip = found_inf.item<float>() > 0;
  }
  if (!skip && options_.grad_clip_norm > 0 && !grads.empty()) {
    c10::NoGradGuard g;
    auto norms = at::_foreach_norm(grads, 2);
    auto total = at::stack(norms).norm();
    auto coef = (options_.grad_clip_norm / (total + 1e-6)).clamp_max(1.0);
    at::_foreach_mul_(grads, coef);
  }
  if (!skip) optimizer_->step(current_lr());
  if (precision_ == Precision::Fp16Mixed) at::_amp_update_scale_(amp_scale_, amp_growth_, found_inf, 2.0, 0.5, 2000);
  ++step_;  // the schedule advances on skipped fp16 steps too, as Lightning's per-batch scheduler does
  optimizer_->zero_grad();
  pending_ = 0;
  update_ema();
}

void Engine::update_ema() {
  if (options_.ema_decay <= 0 || step_ < options_.ema_start || (step_ - options_.ema_start) % options_.ema_every != 0) return;
  blend_average(1.0 - options_.ema_decay);
}

// One update of the average: the first copies the weights; later ones move it towards them by `weight` (EMA:
// 1 − decay; SWA: 1 / (n + 1), the mean of n + 1 snapshots). Integer buffers are copied.
void Engine::blend_average(double weight) {
  c10::NoGradGuard g;
  auto live = network_->state_dict();
  if (ema_updates_ == 0 || ema_.size() != live.size()) {
    ema_.clear();
    for (const auto& [k, t] : live) ema_.emplace_back(k, t.detach().clone());
  } else {
    for (size_t i = 0; i < live.size(); ++i) {
      at::Tensor& e = ema_[i].second;
      if (e.is_floating_point()) e.lerp_(live[i].second, weight);  // e + w·(x − e)
      else e.copy_(live[i].second);
    }
  }
  ++ema_updates_;
}

void Engine::swap_ema() {
  c10::NoGradGuard g;
  auto live = network_->state_dict();  // the module's own tensors: set_data changes what the module holds
  for (size_t i = 0; i < live.size(); ++i) {
    at::Tensor held = live[i].second.data();
    live[i].second.set_data(ema_[i].second);
    ema_[i].second = held;
  }
}

void Engine::set_backbone_trainable(bool trainable, double lr_scale) {
  if (pending_ > 0)
    throw Error(kErrState, "the backbone cannot be frozen or unfrozen while " + std::to_string(pending_) +
                               " batch(es) of gradients wait for their optimizer step; do it between epochs");
  if (!(lr_scale > 0)) throw Error(kErrInvalidArgument, "the backbone's learning-rate factor must be > 0");
  optimizer_->set_lr_scale(network_->backbone_parameter_names(), lr_scale);
  network_->set_backbone_frozen(!trainable);
}

void Engine::set_accumulate(int64_t batches) {
  if (batches < 1) throw Error(kErrInvalidArgument, "accumulate must be ≥ 1 (got " + std::to_string(batches) + ")");
  if (pending_ > 0)
    throw Error(kErrState, "accumulate cannot change while " + std::to_string(pending_) +
                               " batch(es) of gradients wait for their optimizer step; change it between epochs");
  options_.accumulate = batches;
}

void Engine::update_swa() {
  if (!options_.swa) throw Error(kErrState, "update_swa: this engine was made without swa");
  blend_average(1.0 / static_cast<double>(ema_updates_ + 1));
}

void Engine::set_lr_override(double lr) {
  if (!std::isfinite(lr)) throw Error(kErrInvalidArgument, "a learning rate must be finite");
  lr_override_ = lr > 0 ? lr : 0;
}

void Engine::apply_average() {
  if (ema_updates_ == 0) return;
  c10::NoGradGuard g;
  auto live = network_->state_dict();
  for (size_t i = 0; i < live.size(); ++i) live[i].second.copy_(ema_[i].second);
  ema_.clear();
  ema_updates_ = 0;
}

namespace {
// Evaluation and prediction see the average while there is one; the trained weights come back at scope exit.
class AverageInScope {
 public:
  AverageInScope(bool active, std::function<void()> swap) : active_(active), swap_(std::move(swap)) {
    if (active_) swap_();
  }
  ~AverageInScope() {
    if (active_) swap_();
  }
  AverageInScope(const AverageInScope&) = delete;
  AverageInScope& operator=(const AverageInScope&) = delete;

 private:
  bool active_;
  std::function<void()> swap_;
};
}  // namespace

namespace {
// "Precise BatchNorm": after a training epoch, the heads' BatchNorm running statistics are recomputed from the
// epoch's final weights — a cumulative average over up to kRecalibrationBatches training batches in order,
// without augmentation, with dropout and stochastic depth off (eval mode elsewhere) — so evaluation normalises
// with the statistics of the inputs it will actually see. The running averages collected during training lag
// the weights by ~10 steps at momentum 0.1 and carry dropout's extra variance (dropout precedes the second
// BatchNorm): on the Heimdall data their eval-mode predictions were up to 2× worse than train mode mid-training
// and jumped by tens of km between epochs. Deterministic: depends only on the weights and the data set.
constexpr int64_t kRecalibrationBatches = 16;

template <typename Forward>
void recalibrate_batchnorm(Network& network, DatasetPtr data, int64_t batch_size, bool pin_memory, bool background,
                           Forward&& forward) {
  std::vector<std::shared_ptr<torch::nn::BatchNorm1dImpl>> norms;
  for (const auto& m : network->modules(/*include_self=*/false))
    if (auto bn = std::dynamic_pointer_cast<torch::nn::BatchNorm1dImpl>(m); bn && bn->options.track_running_stats())
      norms.push_back(bn);
  if (norms.empty() || data->size() < 2) return;
  LoaderOptions lo;
  lo.batch_size = std::max<int64_t>(2, batch_size);
  lo.pin_memory = pin_memory;
  lo.background = background;
  Loader loader(data, lo);
  c10::NoGradGuard no_grad;
  std::vector<std::optional<double>> momentum;
  std::vector<at::Tensor> tracked;
  for (auto& bn : norms) {
    momentum.push_back(bn->options.momentum());
    tracked.push_back(bn->num_batches_tracked.clone());
    bn->reset_running_stats();
    bn->options.momentum(std::nullopt);  // cumulative average over the batches below
  }
  network->eval();
  for (auto& bn : norms) bn->train(true);
  int64_t used = 0;
  while (used < kRecalibrationBatches) {
    auto batch = loader.next();
    if (!batch) break;
    if (batch->input.size(0) < 2) continue;
    forward(batch->input);
    ++used;
  }
  for (size_t k = 0; k < norms.size(); ++k) {
    norms[k]->options.momentum(momentum[k]);
    norms[k]->num_batches_tracked.copy_(tracked[k]);
  }
  network->train();
}
}  // namespace

void Engine::recalibrate(DatasetPtr data, int64_t batch_size) {
  set_intraop_threads_here(intraop_threads());
  // Every rank recalibrates on the whole data set, in the same order: no statistics to exchange.
  auto reducer = network_->batch_stats_reducer();
  network_->set_batch_stats_reducer(nullptr);
  try {
    recalibrate_batchnorm(network_, data, batch_size, device_.is_cuda(), background_loading(*data),
                          [&](const at::Tensor& input) { forward(to_device(input, true)); });
  } catch (...) {
    network_->set_batch_stats_reducer(reducer);
    throw;
  }
  network_->set_batch_stats_reducer(reducer);
}

EpochResult Engine::train_epoch(DatasetPtr data, int64_t batch_size, int64_t max_epochs, const BatchCallback& on_batch,
                                const std::atomic<bool>& stop, const TrainLimits& limits) {
  check_input(*data);
  set_intraop_threads_here(intraop_threads());
  if (batch_size < 1) throw Error(kErrInvalidArgument, "batchSize must be ≥ 1");
  if (network_->options().head.kind == HeadKind::Localization) {
    // The localization heads' BatchNorm layers cannot train on a batch of one sample (libtorch would fail inside
    // the forward with "Expected more than 1 value per channel"); a last batch of one is dropped by the loader.
    if (batch_size < 2)
      throw Error(kErrInvalidArgument, "batchSize 1 cannot train the localization head: its BatchNorm layers need at least 2 "
                                       "samples per batch; use batchSize ≥ 2");
    if (data->size() < 2)
      throw Error(kErrInvalidArgument, "the training data holds " + std::to_string(data->size()) + " sample (" + data->describe() +
                                           "); the localization head's BatchNorm layers need at least 2 per batch: use more samples");
  }
  // An epoch paused by pause_after goes on with its loader (its order, prefetched batches) and its metrics, when
  // this call is for the same data and batch size and nothing (a checkpoint load) moved the engine since.
  std::unique_ptr<PausedEpoch> paused = std::move(paused_);
  if (paused && (paused->data != data || paused->batch_size != batch_size || paused->epoch != epoch_ || paused->batch != batch_in_epoch_ ||
                 paused->max_batches != limits.max_batches || paused->shuffle != limits.shuffle))
    paused.reset();
  std::unique_ptr<Loader> loader_ptr;
  if (paused) {
    loader_ptr = std::move(paused->loader);
  } else {
    if (pending_ > 0) {  // gradients of a paused epoch that is not continued: dropped, as at any partial end
      optimizer_->zero_grad();
      batch_in_epoch_ -= pending_;
      pending_ = 0;
    }
    LoaderOptions lo;
    lo.batch_size = batch_size;
    lo.shuffle = limits.shuffle;
    lo.augment = true;
    lo.seed = options_.seed;
    lo.epoch = epoch_;
    lo.drop_singleton = network_->options().head.kind == HeadKind::Localization;  // BatchNorm in the heads
    lo.pin_memory = device_.is_cuda();
    lo.background = background_loading(*data);
    if (distributed()) {
      lo.rank = group_->rank();
      lo.world_size = group_->size();
    }
    loader_ptr = std::make_unique<Loader>(data, lo);
  }
  Loader& loader = *loader_ptr;
  const int64_t nb = limits.max_batches >= 0 ? std::min(loader.num_batches(), limits.max_batches) : loader.num_batches();
  if (options_.schedule.total_steps <= 0 && max_epochs > 0) {
    // As Lightning's estimated_stepping_batches: steps per epoch × epochs, bounded by max_steps.
    options_.schedule.total_steps = (nb + options_.accumulate - 1) / options_.accumulate * max_epochs;
    if (limits.max_steps > 0) options_.schedule.total_steps = std::min(options_.schedule.total_steps, limits.max_steps);
  }

  network_->train();
  MetricAccumulator acc = paused ? paused->acc : MetricAccumulator(network_->options().head.kind, options_.position_scale, false);
  const double prior_seconds = paused ? paused->seconds : 0.0;
  EpochResult result;
  result.epoch = epoch_;
  const auto t_epoch = Clock::now();
  sync_seconds_ = paused ? paused->sync_seconds : 0.0;
  if (!paused) {
    // A checkpoint written at another world size counts its batches per rank of that world: rank-strided shards
    // make the first k batches of all W ranks the first k·b·W positions of the epoch's order, so here they are
    // k·W/W' batches (per-rank batch size b unchanged).
    const int64_t world = distributed() ? group_->size() : 1;
    if (batches_world_ != world && batch_in_epoch_ > 0) {
      if ((batch_in_epoch_ * batches_world_) % world != 0) {
        throw Error(kErrState, "the checkpoint stopped after batch " + std::to_string(batch_in_epoch_) + " of " + std::to_string(batches_world_) +
                                   " rank(s), which does not split evenly into " + std::to_string(world) + " rank(s): resume it with " +
                                   std::to_string(batches_world_) + " rank(s) (or 1)");
      }
      batch_in_epoch_ = batch_in_epoch_ * batches_world_ / world;
    }
    batches_world_ = world;
    if (batch_in_epoch_ < 0 || batch_in_epoch_ > nb) {  // a checkpoint's word, checked against this data
      throw Error(kErrState, "the checkpoint resumes at batch " + std::to_string(batch_in_epoch_) + " of an epoch that has " +
                                 std::to_string(nb) + " batches here: resume with the data and batch size it was written with");
    }
    for (int64_t skipped = 0; skipped < batch_in_epoch_; ++skipped) loader.next();  // resumed mid-epoch
  }

  while (batch_in_epoch_ < nb) {
    if (!distributed() && stop.load()) {
      result.stopped = true;
      break;
    }
    if (limits.max_steps >= 0 && step_ >= limits.max_steps && pending_ == 0) {
      result.max_steps_reached = true;
      break;
    }
    if (limits.pause_after > 0 && batch_in_epoch_ >= limits.pause_after) {
      result.paused = true;
      break;
    }
    auto batch = loader.next();
    if (!batch) break;  // every rank has the same number of batches (the shards are padded)
    const auto t0 = Clock::now();
    auto input = to_device(batch->input, true);
    auto target = to_device(batch->target, false);
    auto outputs = forward(input);
    auto loss = compute_loss(loss_, outputs, target, options_.label_smoothing);
    const double loss_value = loss.item<double>();
    if (distributed()) {
      // The ranks agree, before any gradient is exchanged, whether to stop here (a stop request on any rank)
      // and whether some rank's loss is not finite — so all stop at the same batch boundary, none waits alone.
      std::vector<double> flags(1 + group_->size(), 0.0);
      flags[0] = stop.load() ? 1.0 : 0.0;
      flags[1 + group_->rank()] = std::isfinite(loss_value) ? 0.0 : 1.0;
      const auto t_sync = Clock::now();
      flags = group_->allreduce_sum(flags);
      sync_seconds_ += seconds_since(t_sync);
      std::vector<int> bad;
      for (int r = 0; r < group_->size(); ++r)
        if (flags[1 + r] > 0) bad.push_back(r);
      if (!bad.empty() && std::isfinite(loss_value)) {
        optimizer_->zero_grad();
        pending_ = 0;
        std::string ranks;
        for (size_t i = 0; i < bad.size(); ++i) ranks += (i ? ", " : "") + std::to_string(bad[i]);
        throw Error(kErrNonFinite, "training stopped: the loss of rank " + ranks + " is not finite at step " + std::to_string(step_) +
                                       " (epoch " + std::to_string(epoch_) + ", batch " + std::to_string(batch_in_epoch_) +
                                       "); that rank's error says why. The model keeps its weights from before this batch.");
      }
      if (flags[0] > 0 && bad.empty()) {
        result.stopped = true;
        break;
      }
    }
    if (!std::isfinite(loss_value)) {
      optimizer_->zero_grad();
      pending_ = 0;
      std::string why = !at::isfinite(batch->input).all().item<bool>()    ? " The batch's inputs contain NaN or Inf."
                        : (batch->target.is_floating_point() && !at::isfinite(batch->target).all().item<bool>())
                            ? " The batch's targets contain NaN or Inf."
                            : " Lower the learning rate or set gradClipNorm.";
      throw Error(kErrNonFinite, "training stopped: the loss is " + std::string(std::isnan(loss_value) ? "NaN" : "infinite") +
                                     " at step " + std::to_string(step_) + " (epoch " + std::to_string(epoch_) +
                                     ", batch " + std::to_string(batch_in_epoch_) + ")." + why +
                                     " The model keeps its weights from before this batch.");
    }
    const double lr = current_lr();
    at::Tensor scaled = options_.accumulate > 1 ? loss / static_cast<double>(options_.accumulate) : loss;
    if (precision_ == Precision::Fp16Mixed) scaled = scaled * amp_scale_;
    scaled.backward();
    ++pending_;
    ++batch_in_epoch_;
    if (pending_ == options_.accumulate || batch_in_epoch_ == nb) optimizer_step();

    BatchEvent ev;
    ev.metrics = acc.add(outputs, batch->target, loss_value);
    ev.epoch = epoch_;
    ev.batch = batch_in_epoch_ - 1;
    ev.step = step_;
    ev.batch_size = batch->input.size(0);
    ev.lr = lr;
    const double dt = seconds_since(t0);
    ev.samples_per_sec = dt > 0 ? ev.batch_size / dt : 0;
    ev.time = seconds_since(created_);
    if (on_batch) on_batch(ev);
  }
  const bool partial = result.stopped || result.max_steps_reached;
  if (partial && pending_ > 0) {  // drop a partial accumulation: resume redoes those batches
    optimizer_->zero_grad();
    batch_in_epoch_ -= pending_;
    pending_ = 0;
  }
  if (!partial && !result.paused) recalibrate(data, batch_size);
  result.batches = partial || result.paused ? batch_in_epoch_ : nb;
  result.seconds = prior_seconds + seconds_since(t_epoch);
  result.sync_seconds = sync_seconds_;
  if (result.paused) {
    // The metrics so far (all ranks'), from a copy: the epoch's own accumulator goes on counting this rank's.
    MetricAccumulator so_far = acc;
    if (distributed()) so_far.reduce(*group_);
    result.samples = so_far.samples();
    result.metrics = so_far.summary();
    paused_ = std::make_unique<PausedEpoch>(PausedEpoch{data, batch_size, limits.max_batches, epoch_, batch_in_epoch_, limits.shuffle,
                                                        std::move(loader_ptr), std::move(acc), result.seconds, sync_seconds_});
  } else {
    if (distributed()) acc.reduce(*group_);  // all ranks' samples (padding included, as DistributedSampler's)
    result.samples = acc.samples();
    result.metrics = acc.summary();
  }
  result.samples_per_sec = result.seconds > 0 ? result.samples / result.seconds : 0;
  if (!partial && !result.paused) {
    ++epoch_;
    batch_in_epoch_ = 0;
  }
  result.step = step_;
  return result;
}

EpochResult Engine::evaluate(DatasetPtr data, int64_t batch_size, const std::atomic<bool>* stop, int64_t max_batches) {
  check_input(*data);
  set_intraop_threads_here(intraop_threads());
  AverageInScope average(options_.ema_decay > 0 && ema_updates_ > 0, [this] { swap_ema(); });
  LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.pin_memory = device_.is_cuda();
  lo.background = background_loading(*data);
  if (distributed()) {  // disjoint shards without padding: the reduced metrics are those of every sample once
    lo.rank = group_->rank();
    lo.world_size = group_->size();
    lo.pad_to_world = false;
  }
  Loader loader(data, lo);
  network_->eval();
  c10::NoGradGuard no_grad;
  MetricAccumulator acc(network_->options().head.kind, options_.position_scale, true);
  EpochResult result;
  result.epoch = epoch_;
  const auto t0 = Clock::now();
  while (max_batches < 0 || result.batches < max_batches) {
    auto batch = loader.next();
    if (!batch) break;
    if (stop && stop->load() && !distributed()) {  // ranks' batch counts differ here: a rank does not stop alone
      result.stopped = true;
      break;
    }
    auto outputs = forward(to_device(batch->input, true));
    auto target = to_device(batch->target, false);
    auto loss = compute_loss(loss_, outputs, target, 0.0);
    acc.add(outputs, batch->target, loss.item<double>());
    ++result.batches;
  }
  network_->train();
  if (distributed()) acc.reduce(*group_);
  result.samples = acc.samples();
  result.metrics = acc.summary();
  result.seconds = seconds_since(t0);
  result.samples_per_sec = result.seconds > 0 ? result.samples / result.seconds : 0;
  result.step = step_;
  return result;
}

std::vector<at::Tensor> Engine::predict(DatasetPtr data, int64_t batch_size) {
  set_intraop_threads_here(intraop_threads());
  AverageInScope average(options_.ema_decay > 0 && ema_updates_ > 0, [this] { swap_ema(); });
  const auto in = data->input_shape();
  const int64_t c = network_->options().backbone.in_chans;
  if (in.size() != 3 || in[0] != c)
    throw Error(kErrShape, "inputs have shape " + shape_str(in) + " per sample but the model needs [" + std::to_string(c) +
                               ", H ≥ 32, W ≥ 32]");
  LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.pin_memory = device_.is_cuda();
  lo.background = background_loading(*data);
  Loader loader(data, lo);
  network_->eval();
  c10::NoGradGuard no_grad;
  std::vector<std::vector<at::Tensor>> parts;
  while (auto batch = loader.next()) {
    auto outputs = forward(to_device(batch->input, true));
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (parts.size() <= i) parts.emplace_back();
      parts[i].push_back(outputs[i].to(at::kCPU, at::kFloat));
    }
  }
  network_->train();
  std::vector<at::Tensor> out;
  for (auto& p : parts) out.push_back(at::cat(p, 0));
  return out;
}

std::vector<at::Tensor> Engine::predict(const at::Tensor& inputs, int64_t batch_size) {
  return predict(std::make_shared<TensorDataset>(inputs, at::Tensor()), batch_size);
}

void Engine::save_checkpoint(const std::string& path, const std::string& user_json) const {
  // With an average (EMA), the file's weights are the average — what exports, loadWeights and test() from a
  // checkpoint see, as Lightning's — and the trained weights go along as current.<name> for resuming.
  NamedTensors tensors = ema_updates_ > 0 ? ema_ : network_->state_dict();
  if (ema_updates_ > 0)
    for (auto& [k, t] : network_->state_dict()) tensors.emplace_back("current." + k, t);
  for (auto& t : optimizer_->state()) tensors.push_back(std::move(t));
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    tensors.emplace_back("rng.cpu", gen.get_state());
  }
  if (device_.is_cuda()) {
    auto gen = at::globalContext().defaultGenerator(device_);
    std::lock_guard<std::mutex> lock(gen.mutex());
    tensors.emplace_back("rng.cuda", gen.get_state());
  }
  if (amp_scale_.defined()) {
    tensors.emplace_back("amp.scale", amp_scale_);
    tensors.emplace_back("amp.growth_tracker", amp_growth_);
  }
  json::Value state = json::Value::object();
  state["format"] = 1;
  state["epoch"] = epoch_;
  state["step"] = step_;
  // Gradients accumulated before a pause (valCheckInterval) are not saved: the resumed run redoes those batches.
  state["batch_in_epoch"] = batch_in_epoch_ - pending_;
  state["world_size"] = distributed() ? static_cast<int64_t>(group_->size()) : int64_t{1};  // batch_in_epoch counts per rank
  state["total_steps"] = options_.schedule.total_steps;
  state["optimizer"] = options_.optimizer.name;
  state["seed"] = static_cast<int64_t>(options_.seed);
  state["ema_updates"] = ema_updates_;
  state["lr_override"] = lr_override_;
  state["torch"] = torch_version();
  auto meta = network_metadata(network_->options());
  meta["heimdall.checkpoint"] = state.dump();
  meta["heimdall.user"] = user_json.empty() ? "{}" : user_json;
  save_safetensors(path, tensors, meta);
}

std::string Engine::load_checkpoint(const std::string& path) {
  TensorFile file = load_safetensors(path);
  auto it = file.metadata.find("heimdall.checkpoint");
  if (it == file.metadata.end())
    throw Error(kErrFile, path + " is not a heimdall-torch checkpoint (no training state); to load weights only, use loadWeights()");
  const auto& o = network_->options();
  auto meta_of = [&](const char* k) {
    auto m = file.metadata.find(k);
    return m == file.metadata.end() ? std::string("?") : m->second;
  };
  if (meta_of("heimdall.variant") != o.backbone.variant || meta_of("heimdall.head") != head_kind_name(o.head.kind) ||
      meta_of("heimdall.in_chans") != std::to_string(o.backbone.in_chans)) {
    throw Error(kErrWeights, path + " is a checkpoint of " + meta_of("heimdall.variant") + " (" + meta_of("heimdall.head") +
                                 " head, inChans " + meta_of("heimdall.in_chans") + ") but this model is " + o.backbone.variant +
                                 " (" + head_kind_name(o.head.kind) + " head, inChans " + std::to_string(o.backbone.in_chans) + ")");
  }
  // Everything is read and checked first; the engine changes only once the whole file is known to fit, so a
  // damaged checkpoint leaves the engine as it was (no half-resumed weights, optimizer or RNG).
  int64_t epoch = 0, step = 0, batch_in_epoch = 0, world = 1, total_steps = 0, ema_updates = 0;
  double lr_override = 0;
  try {
    json::Value state = json::parse(it->second);
    epoch = state.at("epoch").as_int("epoch");
    step = state.at("step").as_int("step");
    batch_in_epoch = state.at("batch_in_epoch").as_int("batch_in_epoch");
    world = state.has("world_size") ? state.at("world_size").as_int("world_size") : 1;
    total_steps = state.at("total_steps").as_int("total_steps");
    ema_updates = state.has("ema_updates") ? state.at("ema_updates").as_int("ema_updates") : 0;
    lr_override = state.has("lr_override") ? state.at("lr_override").as_number("lr_override") : 0.0;
  } catch (const std::exception& e) {
    throw Error(kErrFile, path + ": the checkpoint's training state (heimdall.checkpoint) cannot be read (" + e.what() +
                              "): the file is damaged or not a heimdall-torch checkpoint");
  }
  if (epoch < 0 || step < 0 || batch_in_epoch < 0 || world < 1 || total_steps < 0 || ema_updates < 0)
    throw Error(kErrFile, path + ": the checkpoint's training state holds negative counters (epoch " + std::to_string(epoch) + ", step " +
                              std::to_string(step) + ", batch " + std::to_string(batch_in_epoch) + "): the file is damaged");
  auto check_rng = [&](const char* key, const at::Tensor& current) {
    const at::Tensor* rng = file.find(key);
    if (rng && (rng->scalar_type() != at::kByte || rng->dim() != 1 || rng->numel() != current.numel()))
      throw Error(kErrFile, path + ": the checkpoint's " + key + " is not a random generator state (" + c10::str(rng->sizes()) + " " +
                                std::string(c10::toString(rng->scalar_type())) + ", expected [" + std::to_string(current.numel()) +
                                "] uint8): the file is damaged");
    return rng;
  };
  const at::Tensor* rng_cpu = check_rng("rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
  const at::Tensor* rng_cuda = device_.is_cuda() ? check_rng("rng.cuda", at::globalContext().defaultGenerator(device_).get_state()) : nullptr;
  auto install_optimizer = optimizer_->stage_state(file);  // checks; changes nothing yet
  NamedTensors weights, current;
  for (const auto& [k, t] : file.tensors) {
    if (is_weight_key(k)) weights.emplace_back(k, t);
    else if (k.rfind("current.", 0) == 0) current.emplace_back(k.substr(8), t);
  }
  // A file with an average holds it as its weights and the trained weights as current.*: training resumes from
  // current.*, and the average goes on from the file's weights (an engine without EMA drops it).
  const bool averaged = !current.empty();
  NamedTensors average;
  if (averaged) {
    const auto live = network_->state_dict();
    std::map<std::string, const at::Tensor*> by_name;
    for (const auto& [k, t] : weights) by_name[k] = &t;
    for (const auto& [k, t] : live) {
      auto a = by_name.find(k);
      if (a == by_name.end() || a->second->sizes() != t.sizes())
        throw Error(kErrFile, path + ": the checkpoint's averaged weights lack " + k + " or have another shape than the model's: the file is damaged");
      average.emplace_back(k, *a->second);
    }
    if (ema_updates < 1)
      throw Error(kErrFile, path + ": the checkpoint holds averaged weights but counts no average update: the file is damaged");
  }
  network_->load_state_dict(averaged ? current : weights, /*strict=*/true);  // checks every name and shape before it copies
  install_optimizer();
  ema_.clear();
  ema_updates_ = 0;
  lr_override_ = std::isfinite(lr_override) && lr_override > 0 ? lr_override : 0;
  if (averaged && (options_.ema_decay > 0 || options_.swa)) {
    c10::NoGradGuard g;
    const auto live = network_->state_dict();
    for (size_t i = 0; i < live.size(); ++i) {
      const at::Tensor& t = live[i].second;
      ema_.emplace_back(live[i].first, average[i].second.to(t.device(), t.scalar_type()).contiguous(t.suggest_memory_format()).clone());
    }
    ema_updates_ = ema_updates;
  }
  try {
    if (rng_cpu) {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(*rng_cpu);
    }
    if (rng_cuda) {
      auto gen = at::globalContext().defaultGenerator(device_);
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(*rng_cuda);
    }
  } catch (const std::exception& e) {
    throw Error(kErrFile, path + ": libtorch refuses the checkpoint's random generator state (" + e.what() + "): the file is damaged");
  }
  if (amp_scale_.defined()) {
    if (const at::Tensor* s = file.find("amp.scale")) amp_scale_.copy_(*s);
    if (const at::Tensor* g = file.find("amp.growth_tracker")) amp_growth_.copy_(*g);
  }
  epoch_ = epoch;
  step_ = step;
  batch_in_epoch_ = batch_in_epoch;
  batches_world_ = world;
  options_.schedule.total_steps = total_steps;
  pending_ = 0;
  paused_.reset();
  optimizer_->zero_grad();
  auto user = file.metadata.find("heimdall.user");
  return user == file.metadata.end() ? "{}" : user->second;
}

}  // namespace heimdall
