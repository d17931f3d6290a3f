// The training engine: train / evaluate / predict loops over native data sets, on CPU or CUDA, with
// mixed precision, gradient accumulation and clipping, a stop flag honoured at batch boundaries, and
// whole-state checkpoints (model, optimizer, schedule position, RNG) so that resuming equals not stopping.
// The Trainer (TypeScript) calls one epoch at a time and runs callbacks in between.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "data/dataset.h"
#include "dist/group.h"
#include "model/network.h"
#include "train/losses.h"
#include "train/metrics.h"
#include "train/optimizer.h"

namespace heimdall {

enum class Precision { Fp32, Bf16Mixed, Fp16Mixed };
Precision parse_precision(const std::string& s);  // "32" | "bf16-mixed" | "16-mixed"

// "cpu" | "cuda" | "cuda:N" | "auto" → a device; throws Error(kErrDevice) if CUDA is asked for and absent.
c10::Device resolve_device(const std::string& spec);

struct EngineOptions {
  std::string device = "auto";
  OptimizerOptions optimizer;
  ScheduleOptions schedule;
  std::string loss = "auto";       // auto: gaussian_nll | cross_entropy | mse by head
  double label_smoothing = 0.0;
  double grad_clip_norm = 0.0;     // 0: off
  int64_t accumulate = 1;          // batches per optimizer step
  std::string precision = "32";
  bool channels_last = false;      // NHWC memory format (fast on CUDA tensor cores)
  // Process-wide libtorch flags, set when the engine is made: "keep" leaves them; deterministic "on" | "off" | "warn"
  // (at::Context's deterministic algorithms and cuDNN determinism); benchmark "on" | "off" (cuDNN autotuning).
  std::string deterministic = "keep";
  std::string benchmark = "keep";
  // Exponential moving average of the weights (Lightning's EMAWeightAveraging); decay 0: off. After optimizer step
  // s with s ≥ ema_start and (s − ema_start) % ema_every == 0: average = decay·average + (1 − decay)·weights (the
  // first update copies), for parameters and floating buffers alike (integer buffers are copied). evaluate and
  // predict use the average; checkpoints hold it as the weights and the trained ones as current.<name>.
  // Data-parallel: normalise the heads' BatchNorm layers with the statistics of all ranks' batches (Lightning's
  // sync_batchnorm); no effect in one process.
  bool sync_batchnorm = false;
  double ema_decay = 0.0;
  int64_t ema_every = 1;
  int64_t ema_start = 1;
  // Stochastic weight averaging: an equal-weight average updated by update_swa() (the Trainer: at epoch ends);
  // evaluation keeps the trained weights; checkpoints hold the average as EMA's do. Exclusive with ema_decay.
  bool swa = false;
  uint64_t seed = 42;
  PositionScale position_scale;
  // Intra-op (OpenMP) threads of the engine's thread; 0: default_intraop_threads() (common/threads.h) — libtorch's
  // default (physical cores or OMP_NUM_THREADS) capped at the CPUs this process may use.
  int threads = 0;
};

struct BatchEvent {
  int64_t epoch = 0, batch = 0, step = 0, batch_size = 0;  // step: optimizer steps taken so far
  double lr = 0, samples_per_sec = 0;
  double time = 0;  // when the batch ended: seconds on a monotonic clock since the engine was made
  std::map<std::string, double> metrics;                    // loss, mae, …
};

struct EpochResult {
  int64_t epoch = 0, batches = 0, samples = 0, step = 0;
  double seconds = 0, samples_per_sec = 0;
  bool stopped = false;                                      // a stop request ended it early
  bool max_steps_reached = false;                            // TrainLimits::max_steps ended it inside the epoch
  bool paused = false;                                       // TrainLimits::pause_after: the epoch goes on at the next call
  double sync_seconds = 0;                                   // data-parallel: time in collectives (gradients, flags)
  std::map<std::string, double> metrics;
};

using BatchCallback = std::function<void(const BatchEvent&)>;

// Lightning's limit_train_batches and max_steps, in batches and optimizer steps (-1: none).
struct TrainLimits {
  int64_t max_batches = -1;  // an epoch is its first max_batches batches (of this epoch's shuffled order)
  int64_t max_steps = -1;    // no optimizer step beyond this count; the epoch ends early, resumable mid-epoch
  // Lightning's val_check_interval: return once the epoch's first pause_after batches are trained (counted from
  // the epoch's start) with `paused` set; the next train_epoch call goes on from there with the same loader, the
  // gradients accumulated so far and the epoch's metrics, so that an epoch in pieces equals one in a single call.
  int64_t pause_after = -1;
  // Lightning's overfit_batches: the epoch's batches in the data set's order (no shuffling), the same every epoch.
  bool shuffle = true;
};

class Loader;

class Engine {
 public:
  Engine(Network network, const EngineOptions& options);
  ~Engine();

  // One epoch of training. max_epochs (and limits.max_steps) set the schedule length on first use when total_steps is 0.
  EpochResult train_epoch(DatasetPtr data, int64_t batch_size, int64_t max_epochs, const BatchCallback& on_batch,
                          const std::atomic<bool>& stop, const TrainLimits& limits = {});
  // max_batches ≥ 0: only the first max_batches batches (Lightning's limit_val_batches / num_sanity_val_steps).
  EpochResult evaluate(DatasetPtr data, int64_t batch_size, const std::atomic<bool>* stop = nullptr, int64_t max_batches = -1);
  // Outputs for every sample, in order, on CPU (eval mode, no augmentation).
  std::vector<at::Tensor> predict(DatasetPtr data, int64_t batch_size);
  std::vector<at::Tensor> predict(const at::Tensor& inputs, int64_t batch_size);

  // One file (safetensors): weights (timm names), optimizer state, counters, RNG, `user` JSON (callbacks,
  // trainer state). Loading restores all of it and returns `user`.
  void save_checkpoint(const std::string& path, const std::string& user_json) const;
  std::string load_checkpoint(const std::string& path);

  // Data-parallel training (collective: every rank calls it): broadcasts rank 0's parameters and buffers, then
  // every train_epoch trains on this rank's shard and averages gradients across ranks on each optimizer step,
  // and evaluate reduces its metrics over all ranks' shards. nullptr: one process again.
  void set_group(GroupPtr group);
  GroupPtr group() const { return group_; }

  // BackboneFinetuning: freezes or unfreezes the backbone; its learning rate is lr_scale × the schedule's (the
  // heads keep 1). Between optimizer steps only (kErrState while gradients are pending). An unfrozen parameter
  // starts its optimizer state fresh, as a parameter group added to a PyTorch optimizer does.
  void set_backbone_trainable(bool trainable, double lr_scale);

  // Lightning's GradientAccumulationScheduler: batches per optimizer step from the next batch on; refused (kErrState)
  // while gradients are pending (between two optimizer steps).
  void set_accumulate(int64_t batches);
  int64_t accumulate() const { return options_.accumulate; }

  // SWA: average += (weights − average) / (n + 1) (the first update copies).
  void update_swa();
  // A learning rate that replaces the schedule's (SWA's SWALR); ≤ 0: the schedule's again. Saved in checkpoints.
  void set_lr_override(double lr);
  // "Precise BatchNorm" on demand: the heads' running statistics recomputed from the weights as they are now.
  void recalibrate(DatasetPtr data, int64_t batch_size);

  // EMA: the weights become the average (Lightning's WeightAveraging at the end of fit); the average restarts.
  void apply_average();
  int64_t ema_updates() const { return ema_updates_; }

  Network network() const { return network_; }
  c10::Device device() const { return device_; }
  int64_t epoch() const { return epoch_; }
  int64_t batch_in_epoch() const { return batch_in_epoch_; }  // batches of the current epoch trained (0 between epochs)
  int64_t step() const { return step_; }
  double current_lr() const;
  int intraop_threads() const;
  const EngineOptions& options() const { return options_; }

 private:
  at::Tensor to_device(const at::Tensor& t, bool is_input) const;
  std::vector<at::Tensor> forward(const at::Tensor& input);
  void optimizer_step();
  void check_input(const Dataset& data) const;
  bool background_loading(const Dataset& data) const;
  bool distributed() const { return group_ && group_->size() > 1; }
  void sync_gradients();
  void update_ema();
  void blend_average(double weight);
  void swap_ema();  // exchanges the model's weights with the average (evaluate / predict, and back)

  Network network_;
  EngineOptions options_;
  c10::Device device_;
  LossKind loss_;
  Precision precision_;
  std::unique_ptr<Optimizer> optimizer_;
  int64_t epoch_ = 0;           // completed epochs
  int64_t step_ = 0;            // optimizer steps
  int64_t batch_in_epoch_ = 0;  // batches of the current epoch already trained (resume mid-epoch)
  int64_t pending_ = 0;         // batches accumulated since the last optimizer step
  at::Tensor amp_scale_, amp_growth_;  // fp16 loss scaling
  GroupPtr group_;                     // data-parallel process group, or none
  double sync_seconds_ = 0;            // time in collectives since the epoch started
  int64_t batches_world_ = 1;          // the world size batch_in_epoch_ counts in (a checkpoint's may differ)
  struct PausedEpoch;                  // an epoch left at TrainLimits::pause_after: its loader, metrics, time
  std::unique_ptr<PausedEpoch> paused_;
  NamedTensors ema_;          // the average, in state_dict() order, on the model's device
  int64_t ema_updates_ = 0;   // updates so far (0: no average yet)
  double lr_override_ = 0;    // > 0: the learning rate instead of the schedule's
  const std::chrono::steady_clock::time_point created_ = std::chrono::steady_clock::now();
};

std::string torch_version();

}  // namespace heimdall
