// The Trainer: Lightning's loop shape over the native engine. One native call trains one epoch off the
// JavaScript thread; callbacks run between epochs and as batch events arrive.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, limitBatches, parseTrainerOptions, type TrainerConfig, type TrainerConfigInput } from '../config.js';
import { HeimdallError } from '../errors.js';
import type { ConvNeXt } from '../model.js';
import { native, torchInfo, type BatchEvent, type EpochResult, type NativeEngine, type NativeEngineOptions, type NativeProcessGroup, type PredictOutput } from '../native.js';
import { exportOnnx as exportOnnxFile, type ExportOnnxOptions, type OnnxExportReport } from '../onnx/export.js';
import { checkpointStep, logOnnxModel } from '../onnx/mlflow_model.js';
import { readCheckpointHeader } from '../onnx/run_export.js';
import { claimSignals } from '../tracking/process_hooks.js';
import { Callback, prefixed, toTrainBatch, type Metrics, type TrainerView } from './callback.js';
import { loggerCallback, withDefaultCallbacks, type LoggerOption } from './callbacks/defaults.js';
import type { MLflowLogger } from './callbacks/mlflow_logger.js';
import { ModelCheckpoint } from './callbacks/model_checkpoint.js';
import { EMAWeightAveraging } from './callbacks/weight_averaging.js';
import { GradientAccumulationScheduler } from './callbacks/gradient_accumulation.js';
import { BackboneFinetuning } from './callbacks/backbone_finetuning.js';
import { BasePredictionWriter } from './callbacks/prediction_writer.js';
import { StochasticWeightAveraging } from './callbacks/swa.js';
import type { DataModule, DataSplits } from './data.js';
import { LrSweep, parseLrFindOptions, type LrFindOptions, type LrFindResult } from './lr_find.js';
import { freePort, groupOptions, LocalLauncher, planDistributed, type DistributedPlan } from './distributed.js';

export interface TrainerOptions extends TrainerConfigInput {
  callbacks?: Callback[];
  /** An MLflowLogger, or an MLflowTracker to log through (one run per fit), or false. */
  logger?: LoggerOption;
}

export interface EpochRecord {
  epoch: number;
  train: Metrics;
  val?: Metrics;
  seconds: number;
  samplesPerSec: number;
  /** Data-parallel: seconds of the epoch this rank spent in collectives (gradient all-reduce, agreement); 0 alone. */
  syncSeconds: number;
}

export interface FitHistory {
  epochs: EpochRecord[];
  /** Why fit ended: maxEpochs reached, a callback's `shouldStop` (EarlyStopping), Ctrl-C / stop(), or `maxTime`. */
  reason: 'max_epochs' | 'stopped' | 'interrupted' | 'max_time' | 'max_steps';
  /** Optimizer steps taken. */
  globalStep: number;
  seconds: number;
  /** The interrupt checkpoint, when interrupted. */
  interruptCheckpoint?: string;
  /** When a limit (`maxTime`, `maxSteps`) ended fit inside an epoch: the checkpoint to resume that epoch from. */
  resumeCheckpoint?: string;
}

export interface FitOptions {
  /** Resume from this checkpoint: model, optimizer, schedule, callbacks and the same MLflow run. */
  ckptPath?: string;
}

export interface TrainerExportOptions extends ExportOnnxOptions {
  /**
   * Which weights: `'best'` (the ModelCheckpoint's best checkpoint), `'last'`, a checkpoint file, or `'current'`
   * (the model as it is now). Default: the best checkpoint when one was saved, else the current weights.
   */
  ckptPath?: 'best' | 'last' | 'current' | string;
  /**
   * With an MLflowLogger: log the file in MLflow's onnx flavor as an MLflow 3 logged model `model` of the run
   * (loadable by `mlflow.pyfunc.load_model('models:/<model_id>')` and `'runs:/<id>/model'`, registrable), tagged
   * with its SHA-256; on an MLflow 2.x store, as the run's `model/` artifact. Default true.
   */
  logModel?: boolean;
}

export interface TrainerExportResult extends OnnxExportReport {
  /** The weights exported: a checkpoint path, or 'current'. */
  source: string;
  /**
   * Where the model was logged: `models:/<model_id>` (an MLflow 3 logged model, the run's output), or
   * `runs:/<id>/model` on a store without logged models (MLflow 2.x).
   */
  modelUri?: string;
  /** `runs:/<id>/model`: resolves to the same model on every store. */
  runModelUri?: string;
  /** The logged model's id (`m-<32 hex>`), null on a store without logged models. */
  modelId?: string | null;
}

export class Trainer implements TrainerView {
  readonly config: TrainerConfig;
  readonly callbacks: Callback[];
  readonly logger?: MLflowLogger;
  /** Set by a callback (EarlyStopping) to end fit after the current epoch. */
  shouldStop = false;
  /** Metrics of the latest epoch (`train/…`, `val/…`), as callbacks read them. */
  callbackMetrics: Metrics = {};
  currentEpoch = 0;
  globalStep = 0;
  model: ConvNeXt | undefined;
  datamodule: DataModule | undefined;
  private engine?: NativeEngine;
  private splits?: DataSplits;
  private interrupted: string | null = null;
  /** A limit that ends fit at a batch boundary as a normal end (`max_time`), set through endFit(). */
  private limit: 'max_time' | 'max_steps' | null = null;
  private stoppedMidEpoch = false;
  /** The last validation's metrics (valCheckInterval: the record of an epoch that early stopping cut short). */
  private lastVal: Metrics | undefined;
  /** Data-parallel: this process's place, its group, and (launcher mode, rank 0) the local ranks it started. */
  readonly plan: DistributedPlan;
  private group?: NativeProcessGroup;
  private launcher?: LocalLauncher;
  /** The callbacks that run in this process (rank > 0: not the rank-zero-only ones). */
  private active: Callback[];
  /** The MLflow run id, on every rank (rank 0's, shared through the process group's store). */
  runId: string | null = null;

  constructor(options: TrainerOptions = {}) {
    const { callbacks = [], logger, ...rest } = options;
    this.config = parseTrainerOptions(rest);
    if (this.config.limitTrainBatches === 0) throw new ConfigError(['limitTrainBatches: 0 leaves nothing to train; leave it out for every batch']);
    this.logger = loggerCallback(logger);
    const progress = this.config.enableProgressBar ?? (Boolean(process.stdout.isTTY) && !process.env.CI);
    const all = withDefaultCallbacks(callbacks, this.logger, progress, this.config);
    const keys = new Set<string>();
    for (const c of all) {
      if (keys.has(c.stateKey)) {
        throw new HeimdallError('HEIMDALL_INVALID_CONFIG',
          `two callbacks have the same settings (state key ${c.stateKey}): their checkpointed state would collide; drop one or change its settings`);
      }
      keys.add(c.stateKey);
    }
    this.callbacks = all;
    const c = this.config;
    const devices = c.devices === 'auto' ? (c.device !== 'cpu' && torchInfo().cudaAvailable ? Math.max(1, torchInfo().cudaDeviceCount) : 1) : c.devices;
    this.plan = planDistributed(process.env, devices, c.numNodes);
    this.active = this.plan.rank === 0 ? all : all.filter((cb) => !cb.rankZeroOnly);
  }

  get globalRank(): number {
    return this.plan.rank;
  }
  get worldSize(): number {
    return this.plan.worldSize;
  }
  get numNodes(): number {
    return Math.max(1, Math.round(this.plan.worldSize / this.plan.localWorldSize));
  }
  /** True on rank 0 (and when training alone): the process that logs and writes checkpoints. */
  get isGlobalZero(): boolean {
    return this.plan.rank === 0;
  }
  get distributedBackend(): string | undefined {
    return this.group?.backend;
  }

  /** The first ModelCheckpoint among the callbacks (Lightning's `trainer.checkpoint_callback`): 'best' and 'last' resolve through it. */
  get checkpointCallback(): ModelCheckpoint | undefined {
    return this.callbacks.find((c): c is ModelCheckpoint => c instanceof ModelCheckpoint);
  }

  /** Batches per loop in fastDevRun mode (0: off). */
  get fastDevRunBatches(): number {
    const f = this.config.fastDevRun;
    return f === true ? 1 : f === false ? 0 : f;
  }

  /** The folder for checkpoints and outputs. */
  get rootDir(): string {
    return resolve(this.config.defaultRootDir);
  }
  get device(): string | undefined {
    return this.engine?.device;
  }
  get lr(): number | undefined {
    return this.engine?.lr;
  }

  /** Logs metrics through the logger (if any) at the current global step. */
  logMetrics(metrics: Metrics, step = this.globalStep): void {
    if (this.isGlobalZero) this.logger?.logMetrics(metrics, step);
  }

  /** Asks fit to stop at the next batch boundary (used for Ctrl-C). */
  stop(reason = 'stop()'): void {
    this.interrupted ??= reason;
    this.engine?.requestStop();
  }

  /**
   * Ends fit at the next batch boundary as a normal end (the Timer's `maxTime`): a checkpoint to resume the
   * epoch is written when it ends inside one, callbacks see onTrainEnd/onFitEnd, the run ends FINISHED.
   */
  endFit(reason: 'max_time'): void {
    if (this.interrupted) return;
    this.limit ??= reason;
    this.engine?.requestStop();
  }

  async fit(model: ConvNeXt, data: DataModule, options: FitOptions = {}): Promise<FitHistory> {
    const t0 = Date.now();
    this.model = model;
    this.datamodule = data;
    this.shouldStop = false;
    this.interrupted = null;
    this.limit = null;
    this.stoppedMidEpoch = false;
    const history: FitHistory = { epochs: [], reason: 'max_epochs', globalStep: 0, seconds: 0 };
    const removeSignals = this.config.handleSignals ? this.installSignalHandlers() : () => undefined;
    try {
      await model.ready();
      await this.joinGroup();
      this.splits = await data.setup();
      this.engine = new (native().Engine)(model.native, this.engineOptions(data));
      if (options.ckptPath) await this.restore(options.ckptPath);
      if (this.group) await this.engine.setProcessGroup(this.group);  // rank 0's weights on every rank
      this.syncCounters();
      await this.applyFinetuning(this.engine.epoch); // before ModelSummary counts what trains
      const dev = this.fastDevRunBatches;
      if (dev) process.stdout.write(`heimdall-torch: fastDevRun: ${dev} batch(es) of each loop, one epoch; no checkpoints, early stopping or logger run\n`);
      await this.call('onFitStart');
      await this.sanityCheck();
      await this.shareRunId();
      await this.monitorNode();
      await this.call('onTrainStart');
      const maxEpochs = dev ? this.engine.epoch + 1 : this.config.maxEpochs;
      const { maxSteps } = this.config;
      let announced = false;
      while (this.engine.epoch < maxEpochs && !this.limit) {
        if (maxSteps !== undefined && this.engine.step >= maxSteps) {
          this.limit = 'max_steps';
          break;
        }
        if (this.shouldStop) {
          if (this.minimaReached()) break;
          if (!announced) {
            process.stderr.write(`heimdall-torch: asked to stop, but minEpochs=${this.config.minEpochs} / minSteps=${this.config.minSteps} are not reached yet: training goes on\n`);
            announced = true;
          }
        }
        const record = await this.runEpoch(maxEpochs);
        if (record) history.epochs.push(record);
        if (this.interrupted || this.limit) break;
        if (this.group) {  // EarlyStopping (or any callback) stops every rank when it stops one
          const [stops] = await this.group.allreduceSum([this.shouldStop ? 1 : 0]);
          this.shouldStop = stops! > 0;
        }
      }
      if (this.limit && !this.interrupted) {
        history.reason = this.limit;
        await this.applyWeightAverage();
        if (this.stoppedMidEpoch && !dev) {
          const path = join(this.rootDir, 'checkpoints', `${this.limit}.safetensors`);
          if (this.isGlobalZero) {
            mkdirSync(join(this.rootDir, 'checkpoints'), { recursive: true });
            await this.saveCheckpoint(path);
          }
          history.resumeCheckpoint = path;
        }
        await this.call('onTrainEnd');
        await this.call('onFitEnd');
      } else if (this.interrupted && dev) {
        history.reason = 'interrupted'; // fastDevRun leaves no files: no interrupt checkpoint
        await this.call('onInterrupt', null);
      } else if (this.interrupted) {
        history.reason = 'interrupted';
        const path = join(this.rootDir, 'checkpoints', 'interrupted.safetensors');
        if (this.isGlobalZero) {
          mkdirSync(join(this.rootDir, 'checkpoints'), { recursive: true });
          await this.saveCheckpoint(path);
        }
        history.interruptCheckpoint = path;
        await this.call('onInterrupt', path);
      } else {
        if (this.shouldStop && this.minimaReached()) history.reason = 'stopped';
        await this.applyWeightAverage();
        await this.call('onTrainEnd');
        await this.call('onFitEnd');
      }
      history.globalStep = this.globalStep;
      history.seconds = (Date.now() - t0) / 1000;
      if (dev) process.stdout.write(`${fastDevRunReport(history)}\n`);
      return history;
    } catch (err) {
      let error = err instanceof Error ? err : new HeimdallError('HEIMDALL_INTERNAL', String(err), { cause: err });
      const failed = this.launcher?.failure();
      if (this.launcher) this.launcher.kill('SIGTERM');
      if (failed) {  // the root cause: a rank this process started died (this one then fails in a collective)
        error = new HeimdallError('HEIMDALL_DISTRIBUTED', `data-parallel training failed: ${failed}; the other ranks were stopped (${error.message})`, { cause: error });
      }
      for (const c of this.active) {
        try {
          await c.onException?.(this, error);
        } catch {
          /* the original error matters more */
        }
      }
      throw error;
    } finally {
      removeSignals();
      await this.logger?.tracker.monitorSystemMetrics(null).catch(() => undefined);
    }
  }

  /**
   * The learning-rate range test (Lightning's `Tuner(trainer).lr_find(model, datamodule)`): `numTraining` steps with
   * the rate growing exponentially from `minLr` to `maxLr`, with this Trainer's optimizer and settings; stops when the
   * loss diverges; the model's weights are restored afterwards. Returns the sweep and the suggested rate (steepest
   * descent of the smoothed loss). Nothing is logged and no callback runs.
   */
  async lrFind(model: ConvNeXt, data: DataModule, options: LrFindOptions = {}): Promise<LrFindResult> {
    const o = parseLrFindOptions(options);
    await model.ready();
    const splits = await data.setup();
    const dir = mkdtempSync(join(tmpdir(), 'heimdall-lr-find-'));
    const saved = join(dir, 'weights.safetensors');
    await model.saveWeights(saved);
    const sweep = new LrSweep(o);
    try {
      const base = this.engineOptions(data);
      const engine = new (native().Engine)(model.native, {
        ...base,
        emaDecay: 0, // the sweep's weights are thrown away: no average to keep
        swa: false,
        optimizer: { ...base.optimizer, lr: o.maxLr },
        schedule: { name: 'exponential', warmupSteps: 0, minLr: o.minLr, totalSteps: o.numTraining },
      });
      let done = false;
      while (!done && engine.step < o.numTraining) {
        try {
          const r = await engine.trainEpoch(splits.train, { batchSize: data.batchSize, maxEpochs: 1, maxSteps: o.numTraining }, (ev) => {
            if (done) return;
            if (sweep.add(ev.lr, ev.metrics.loss ?? NaN)) {
              done = true;
              engine.requestStop();
            }
          });
          if (r.stopped) done = true;
        } catch (err) {
          // A non-finite loss at a high rate is the divergence the sweep looks for.
          if (!(err instanceof HeimdallError && err.code === 'HEIMDALL_NON_FINITE_LOSS')) throw err;
          sweep.diverged = true;
          done = true;
        }
      }
      return sweep.result();
    } finally {
      await model.loadWeights(saved, { strict: true });
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Evaluates the validation split (or `data`'s) with the current weights. */
  async validate(data?: DataModule): Promise<Metrics> {
    const engine = this.requireEngine();
    const splits = data ? await data.setup() : this.splits;
    if (!splits?.val) throw new HeimdallError('HEIMDALL_INVALID_ARGUMENT', 'validate(): the data module has no validation split');
    engine.clearStop(); // a stop that ended fit() is not a stop of this call
    const batchSize = (data ?? this.datamodule)!.batchSize;
    const r = await engine.evaluate(splits.val, { batchSize, ...this.evalLimit(this.valLimit, splits.val.size, batchSize) });
    return prefixed('val', r.metrics);
  }

  /**
   * Evaluates the test split. `ckptPath: 'best'` first loads the best checkpoint of the ModelCheckpoint
   * callback (as Lightning does). Logs `test/…` metrics and the reference's `final_test_loss`/`final_test_mae`.
   */
  async test(options: { data?: DataModule; ckptPath?: 'best' | 'last' | string } = {}): Promise<Metrics> {
    const engine = this.requireEngine();
    const data = options.data ?? this.datamodule;
    const splits = options.data ? await options.data.setup() : this.splits;
    if (!data || !splits?.test) throw new HeimdallError('HEIMDALL_INVALID_ARGUMENT', 'test(): the data module has no test split');
    if (options.ckptPath && this.isGlobalZero) {
      const path = this.resolveCheckpoint(options.ckptPath, 'test');
      if (path) await engine.loadCheckpoint(path);
    }
    if (this.group) await engine.setProcessGroup(this.group);  // rank 0's weights (its checkpoint) on every rank
    engine.clearStop();
    const r = await engine.evaluate(splits.test, { batchSize: data.batchSize, ...this.evalLimit(this.config.limitTestBatches, splits.test.size, data.batchSize) });
    const metrics = prefixed('test', r.metrics);
    await this.call('onTestEnd', metrics, data);
    return metrics;
  }

  /**
   * Outputs for a data set (its test split, else val, else train) or for a batch of inputs [B, C, H, W]. For a data
   * set, batch by batch: prediction writers (BasePredictionWriter) get each batch as it is made, and with
   * `returnPredictions: false` nothing is kept (the result is then empty), as Lightning's `return_predictions`.
   */
  async predict(input: DataModule | Float32Array, shape?: number[] | { returnPredictions?: boolean }): Promise<Record<string, PredictOutput>> {
    const engine = this.requireEngine();
    if (input instanceof Float32Array) {
      if (!Array.isArray(shape)) throw new HeimdallError('HEIMDALL_INVALID_ARGUMENT', 'predict(Float32Array) needs the shape [batch, C, H, W]');
      return engine.predict(input, { shape, batchSize: 64 });
    }
    const returnPredictions = (Array.isArray(shape) ? undefined : shape?.returnPredictions) ?? true;
    const splits = await input.setup();
    const data = splits.test ?? splits.val ?? splits.train;
    const writers = this.active.filter((c): c is BasePredictionWriter => c instanceof BasePredictionWriter);
    const keep = returnPredictions || writers.some((w) => w.keepsPredictions);
    const batchSize = input.batchSize;
    const batches: Record<string, PredictOutput>[] = [];
    const indices: number[][] = [];
    await this.call('onPredictStart');
    try {
      for (let b = 0; b * batchSize < data.size; b++) {
        const idx = Array.from({ length: Math.min(batchSize, data.size - b * batchSize) }, (_, i) => b * batchSize + i);
        const out = await engine.predict(native().subset(data, idx), { batchSize });
        await this.call('onPredictBatchEnd', out, idx, b);
        if (keep) {
          batches.push(out);
          indices.push(idx);
        }
      }
      await this.call('onPredictEpochEnd', batches, indices);
    } finally {
      await this.call('onPredictEnd');
    }
    return returnPredictions ? concatOutputs(batches) : {};
  }

  /**
   * Exports the trained model to ONNX at `path` (native exporter), validated in ONNX Runtime against libtorch
   * (throws when over the thresholds). The data module's input shape and inference metadata (target
   * normalisation, feature constants) go into the file; with an MLflowLogger the model joins the run as `model/`.
   */
  async exportOnnx(path: string, options: TrainerExportOptions = {}): Promise<TrainerExportResult> {
    if (!this.model) throw new HeimdallError('HEIMDALL_INVALID_STATE', 'exportOnnx(): call fit() first (the Trainer has no model yet)');
    if (!this.isGlobalZero) {
      throw new HeimdallError('HEIMDALL_INVALID_STATE', `exportOnnx(): rank ${this.globalRank} does not export; rank 0 does (check trainer.isGlobalZero)`);
    }
    const { ckptPath, logModel = true, ...exportOptions } = options;
    const hasBest = Boolean(this.checkpointCallback?.bestModelPath);
    const which = ckptPath ?? (hasBest ? 'best' : 'current');
    const source = which === 'current' ? null : this.resolveCheckpoint(which, 'exportOnnx');
    const data = this.datamodule;
    const shape = data?.inputShape;
    const metadata: Record<string, string> = {};
    const dataJson = data?.metadataJson?.();
    if (dataJson) metadata['heimdall.data'] = dataJson;
    const report = await exportOnnxFile(source ?? this.model.native, resolve(path), {
      ...(shape?.length === 3 ? { inputShape: [shape[0]!, shape[1]!, shape[2]!] as [number, number, number] } : {}),
      ...exportOptions,
      metadata: { ...metadata, ...exportOptions.metadata },
    });
    const result: TrainerExportResult = { ...report, source: source ?? 'current' };
    if (logModel && this.logger) {
      // Linked to the run at the step the checkpoint was saved (the step its epoch's metrics were logged at).
      const step = (source ? checkpointStep(readCheckpointHeader(source).metadata) : null) ?? this.globalStep;
      const logged = await logOnnxModel(report, join(this.rootDir, 'mlflow-model'), this.logger, result.source, step);
      Object.assign(result, logged);
    }
    return result;
  }

  /** Writes a full training checkpoint (weights, optimizer, schedule, RNG, callbacks, MLflow run). */
  async saveCheckpoint(path: string): Promise<void> {
    const engine = this.requireEngine();
    const callbacks: Record<string, unknown> = {};
    for (const c of this.callbacks) if (c.stateDict) callbacks[c.stateKey] = c.stateDict();
    const user = { trainer: { epoch: engine.epoch, globalStep: engine.step }, callbacks };
    await engine.saveCheckpoint(path, JSON.stringify(user));
  }

  // ---------------------------------------------------------------------------------------------------
  /**
   * Intra-op threads of this process's engine: the `threads` option; else, with several ranks on this node and no
   * OMP_NUM_THREADS, the CPUs this process may use split between the local ranks (the engine's own default is all
   * of them, which N ranks would oversubscribe N-fold; torchrun sets OMP_NUM_THREADS=1 for the same reason);
   * else undefined: the engine's default.
   */
  get threads(): number | undefined {
    if (this.config.threads !== undefined) return this.config.threads;
    if (this.plan.localWorldSize > 1 && !process.env.OMP_NUM_THREADS) return Math.max(1, Math.floor(availableParallelism() / this.plan.localWorldSize));
    return undefined;
  }

  private engineOptions(data: DataModule): NativeEngineOptions {
    const c = this.config;
    // NCCL: one GPU per local rank.
    const device = this.group?.backend === 'nccl' ? `cuda:${this.plan.localRank}` : c.device;
    return {
      device,
      precision: c.precision,
      optimizer: c.optimizer,
      schedule: this.scheduleFor(c),
      gradClipNorm: c.gradClipNorm,
      accumulate: c.accumulateGradBatches,
      channelsLast: c.channelsLast ?? c.device.startsWith('cuda'),
      syncBatchNorm: c.syncBatchNorm,
      deterministic: c.deterministic === undefined ? 'keep' : c.deterministic === 'warn' ? 'warn' : c.deterministic ? 'on' : 'off',
      // As Lightning: benchmark unset follows deterministic (off when it is on), else stays as it is.
      benchmark: c.benchmark === undefined ? (c.deterministic === true || c.deterministic === 'warn' ? 'off' : 'keep') : c.benchmark ? 'on' : 'off',
      seed: c.seed,
      ...(this.weightAveraging ? this.weightAveraging.engineOptions() : {}),
      ...(this.swaCallback ? { swa: true } : {}),
      ...(this.threads !== undefined ? { threads: this.threads } : {}),
      ...(data.positionScale ? { positionScale: data.positionScale } : {}),
    };
  }

  private async restore(path: string): Promise<void> {
    await restoreCheckpoint(this.engine!, this.callbacks, path);
  }

  /** Lightning's `min_epochs` / `min_steps`: a stop request (EarlyStopping) is honoured only once both are reached. */
  private minimaReached(): boolean {
    return this.engine!.epoch >= this.config.minEpochs && this.engine!.step >= this.config.minSteps;
  }

  /**
   * Data-parallel: joins the process group (launcher mode: first starts the other local ranks). Gloo on CPU, NCCL
   * on CUDA. A rank that does not join in time fails every rank with an error naming it.
   */
  private async joinGroup(): Promise<void> {
    const plan = this.plan;
    if (plan.worldSize < 2 || this.group) return;
    const cuda = this.config.device.startsWith('cuda') || (this.config.device === 'auto' && torchInfo().cudaAvailable);
    if (plan.mode === 'launcher') plan.masterPort ??= await freePort(plan.masterAddr === 'localhost' ? '127.0.0.1' : plan.masterAddr);
    // Rank 0's store is listening (the rendezvous runs on a worker thread) before the other ranks start.
    const joining = native().createProcessGroup(groupOptions(plan, cuda ? 'nccl' : 'gloo'));
    if (plan.mode === 'launcher') {
      this.launcher = new LocalLauncher(plan);
      this.launcher.start();
    }
    try {
      this.group = await joining;
    } catch (err) {
      const failed = this.launcher?.failure();
      if (failed) throw new HeimdallError('HEIMDALL_DISTRIBUTED', `data-parallel training could not start: ${failed} (${(err as Error).message})`, { cause: err });
      throw err;
    }
  }

  /** Rank 0's MLflow run id reaches the other ranks through the group's store (one run per fit). */
  private async shareRunId(): Promise<void> {
    if (!this.group) {
      this.runId = this.logger?.runId ?? null;
      return;
    }
    if (this.isGlobalZero) {
      this.runId = this.logger?.runId ?? null;
      await this.group.set(`run_id/${this.fitCount}`, this.runId ?? '');
    } else {
      this.runId = (await this.group.get(`run_id/${this.fitCount}`, 300_000)) || null;
    }
    this.fitCount++;
  }
  private fitCount = 0;

  /**
   * Multi-node: rank 0's logger monitors node 0 (`system/node-0/…`); the first rank of each other node logs its
   * machine's system metrics to the same run, as `system/node-<NODE_RANK>/…` (or its MLFLOW_SYSTEM_METRICS_NODE_ID),
   * through its own logger's tracker, as each node of a Python job does with that variable set. Until fit ends.
   */
  private async monitorNode(): Promise<void> {
    const p = this.plan;
    const logger = this.logger;
    if (!logger || !this.runId || p.nodeRank === 0 || p.localRank !== 0 || this.numNodes < 2 || this.fastDevRunBatches) return;
    if (!logger.logsSystemMetrics(this.config.logSystemMetrics)) return;
    try {
      await logger.tracker.monitorSystemMetrics(this.runId, { nodeId: logger.systemMetricsNodeId(this.numNodes, p.nodeRank) });
    } catch (err) {
      process.emitWarning(`MLflow: node ${p.nodeRank}'s system metrics are not logged: ${(err as Error).message}`, 'MLflowLoggerWarning');
    }
  }

  private syncCounters(): void {
    this.currentEpoch = this.engine!.epoch;
    this.globalStep = this.engine!.step;
  }

  private async runEpoch(maxEpochs: number): Promise<EpochRecord | null> {
    const engine = this.engine!;
    const splits = this.splits!;
    const epoch = engine.epoch;
    this.currentEpoch = epoch;
    const scheduler = this.accumulationScheduler;
    if (scheduler && engine.accumulate !== scheduler.factor(epoch)) await engine.setAccumulate(scheduler.factor(epoch));
    await this.applyFinetuning(epoch);
    await this.applySwaRate(epoch);
    await this.call('onTrainEpochStart', epoch);
    // Batch hooks are chained so they run in order, without holding up the native loop.
    let chain: Promise<void> = Promise.resolve();
    let hookError: unknown = null;
    const enqueue = (fn: () => Promise<void>) => {
      chain = chain.then(fn).catch((e) => {
        hookError ??= e;
        engine.requestStop();
      });
    };
    const batchSize = this.datamodule!.batchSize;
    const batches = this.trainBatches;
    enqueue(() => this.call('onTrainBatchStart', epoch, 0));
    const limits = {
      ...(batches < Math.ceil(splits.train.size / batchSize) ? { maxBatches: batches } : {}),
      ...(this.config.overfitBatches > 0 ? { shuffle: false } : {}),
      ...(this.config.maxSteps !== undefined ? { maxSteps: this.config.maxSteps } : {}),
    };
    const onBatch = (ev: BatchEvent) => {
      const batch = toTrainBatch(ev);
      this.globalStep = ev.step;
      enqueue(async () => {
        await this.call('onTrainBatchEnd', batch);
        if (batch.batch + 1 < batches) await this.call('onTrainBatchStart', epoch, batch.batch + 1);
      });
    };
    const valLimit = this.evalLimit(this.valLimit, splits.val?.size ?? 0, batchSize);
    const validates = Boolean(splits.val) && valLimit.maxBatches !== 0 && (epoch + 1) % this.config.checkValEveryNEpoch === 0;
    const every = validates ? this.valCheckBatches(batches) : null;
    let result: EpochResult;
    for (;;) {
      // valCheckInterval: the engine pauses at the next multiple of `every` inside the epoch (a resumed epoch may
      // start past some), the Trainer validates, and the same epoch goes on.
      const next = every === null ? undefined : (Math.floor(engine.batchInEpoch / every) + 1) * every;
      const pause = next !== undefined && next < batches ? { pauseAfter: next } : {};
      result = await engine.trainEpoch(splits.train, { batchSize, maxEpochs, ...limits, ...pause }, onBatch);
      if (!result.paused) break;
      await chain;
      if (hookError) throw hookError;
      const verdict = await this.validateMidEpoch(result, batchSize, valLimit);
      if (verdict === 'interrupted') return null;
      if (verdict === 'stop') {
        // EarlyStopping (or a callback) ended training at this validation: the epoch ends here, unfinished.
        return { epoch, train: prefixed('train', result.metrics), val: this.lastVal, seconds: result.seconds, samplesPerSec: result.samplesPerSec, syncSeconds: result.syncSeconds };
      }
    }
    await chain;
    if (hookError) throw hookError;
    this.globalStep = engine.step;
    if (result.maxStepsReached && !result.stopped) {
      this.limit ??= 'max_steps';
      this.stoppedMidEpoch = true;
      return null;
    }
    if (result.stopped && this.group) {
      // The ranks stopped at one batch (the engine agrees on it); they agree on why too: any rank's signal or stop()
      // makes it an interruption on all, else a limit (maxTime) on one is the limit of all.
      const [interrupts, limits] = await this.group.allreduceSum([this.interrupted ? 1 : 0, this.limit ? 1 : 0]);
      if (interrupts! > 0) this.interrupted ??= 'stop request on another rank';
      else if (limits! > 0) this.limit ??= 'max_time';
    }
    if (result.stopped) {
      if (!this.interrupted && !this.limit) this.interrupted = 'stop request';
      this.stoppedMidEpoch = true;
      return null;
    }
    // A limit reached on the epoch's last batch: the epoch is whole, so it is validated and checkpointed as any other.
    if (this.limit && !this.interrupted) engine.clearStop();
    const swa = this.swaCallback;
    if (swa && epoch >= swa.firstEpoch(this.config.maxEpochs)) await engine.updateSwa(); // the epoch's weights join the average
    const train = prefixed('train', result.metrics);
    let val: Metrics | undefined;
    if (validates && splits.val) {
      await this.call('onValidationStart');
      const r = await engine.evaluate(splits.val, { batchSize, ...valLimit });
      // A stop during validation leaves a partial pass: not the epoch's val/*, and no callback acts on it.
      if (r.stopped) {
        if (!this.interrupted) this.interrupted = 'stop request';
        return null;
      }
      val = prefixed('val', r.metrics);
      this.callbackMetrics = { ...train, ...val };
      await this.call('onValidationEpochEnd', val);
    } else {
      this.callbackMetrics = { ...train };
    }
    this.currentEpoch = engine.epoch; // completed epochs
    await this.call('onTrainEpochEnd', { ...train, ...(val ?? {}) });
    if (this.config.maxSteps !== undefined && engine.step >= this.config.maxSteps) this.limit ??= 'max_steps';
    return { epoch, train, val, seconds: result.seconds, samplesPerSec: result.samplesPerSec, syncSeconds: result.syncSeconds };
  }

  /** Batches between validations inside an epoch (valCheckInterval), or null when only the epoch's end validates. */
  private valCheckBatches(batches: number): number | null {
    const v = this.config.valCheckInterval;
    if (v === 1 || this.fastDevRunBatches) return null; // fastDevRun validates once, as Lightning's
    const every = v < 1 ? Math.max(1, Math.floor(batches * v)) : v;
    if (v > 1 && every > batches) {
      throw new ConfigError([`valCheckInterval: ${v} batches is more than the ${batches} training batches of an epoch; give at most ${batches}, or a fraction of the epoch in (0, 1)`]);
    }
    return every < batches ? every : null;
  }

  /**
   * A validation inside the epoch (valCheckInterval): the callbacks see the training metrics so far and this
   * validation's, as at an epoch's end; EarlyStopping and ModelCheckpoint act on it. 'stop': a callback asked
   * training to stop (and minEpochs/minSteps allow it); 'interrupted': a stop request came during the validation.
   */
  private async validateMidEpoch(result: EpochResult, batchSize: number, valLimit: { maxBatches?: number }): Promise<'go-on' | 'stop' | 'interrupted'> {
    await this.call('onValidationStart');
    const r = await this.engine!.evaluate(this.splits!.val!, { batchSize, ...valLimit });
    if (r.stopped) {
      if (!this.interrupted) this.interrupted = 'stop request';
      this.stoppedMidEpoch = true;
      return 'interrupted';
    }
    const val = prefixed('val', r.metrics);
    this.lastVal = val;
    this.callbackMetrics = { ...prefixed('train', result.metrics), ...val };
    await this.call('onValidationEpochEnd', val);
    await this.call('onValidationEnd', this.callbackMetrics);
    if (this.group) {
      const [stops] = await this.group.allreduceSum([this.shouldStop ? 1 : 0]);
      this.shouldStop = stops! > 0;
    }
    return this.shouldStop && this.minimaReached() ? 'stop' : 'go-on';
  }

  /** The validation batches Lightning runs before training (`num_sanity_val_steps`); results are discarded. */
  private async sanityCheck(): Promise<void> {
    const n = this.fastDevRunBatches ? 0 : this.config.numSanityValSteps;
    const val = this.splits?.val;
    const batchSize = this.datamodule!.batchSize;
    if (!val || n === 0 || this.evalLimit(this.valLimit, val.size, batchSize).maxBatches === 0) return;
    await this.engine!.evaluate(val, { batchSize, ...(n > 0 ? { maxBatches: n } : {}) });
  }

  /** `{ maxBatches }` for an evaluation loop from its limit option (fastDevRun's n first), `{}` for all batches. */
  private evalLimit(limit: number | undefined, size: number, batchSize: number): { maxBatches?: number } {
    const dev = this.fastDevRunBatches;
    if (dev) return { maxBatches: dev };
    if (limit === undefined) return {};
    return { maxBatches: limitBatches(limit, Math.ceil(size / batchSize)) };
  }

  private async call<K extends keyof Callback>(hook: K, ...args: unknown[]): Promise<void> {
    const dev = this.fastDevRunBatches > 0;
    for (const c of this.active) {
      if (dev && !c.runsInFastDevRun) continue;
      const fn = c[hook] as ((this: Callback, t: TrainerView, ...a: unknown[]) => unknown) | undefined;
      if (typeof fn === 'function') await fn.call(c, this, ...args);
    }
  }

  private requireEngine(): NativeEngine {
    if (!this.engine) throw new HeimdallError('HEIMDALL_INVALID_STATE', 'call fit() first (the Trainer has no trained model yet)');
    return this.engine;
  }

  private resolveCheckpoint(which: string, caller: string): string {
    if (which !== 'best' && which !== 'last') {
      if (!existsSync(which)) throw new HeimdallError('HEIMDALL_NOT_FOUND', `${caller}({ ckptPath }): checkpoint file ${which} does not exist`, { option: 'ckptPath' });
      return which;
    }
    const ckpt = this.checkpointCallback;
    const path = which === 'best' ? ckpt?.bestModelPath : ckpt?.lastModelPath;
    if (!path) throw new HeimdallError('HEIMDALL_INVALID_STATE', `${caller}({ ckptPath: '${which}' }) needs a ModelCheckpoint callback that saved a ${which} checkpoint`);
    return path;
  }

  private installSignalHandlers(): () => void {
    const handler = (signal: NodeJS.Signals) => {
      if (this.interrupted) {
        process.stderr.write(`\nheimdall-torch: second ${signal}, exiting now\n`);
        process.exit(signal === 'SIGINT' ? 130 : 143);
      }
      process.stderr.write(`\nheimdall-torch: ${signal}: stopping at the next batch boundary and saving a checkpoint…\n`);
      this.stop(signal);
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
    // A tracker given as `logger` (handleSignals on by default) would end its run and exit on the same signal
    // before the batch boundary: while fitting, the signals are the Trainer's.
    const release = claimSignals('Trainer.fit');
    return () => {
      release();
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    };
  }

  /**
   * The learning-rate schedule's length: the engine's own count (batches ÷ accumulation × epochs) unless a
   * GradientAccumulationScheduler changes the accumulation, whose optimizer steps are counted epoch by epoch here.
   */
  private scheduleFor(c: TrainerConfig): NativeEngineOptions['schedule'] {
    const scheduler = this.accumulationScheduler;
    if (!scheduler || !this.splits) return c.schedule;
    const steps = scheduler.steps(this.trainBatches, this.fastDevRunBatches ? 1 : c.maxEpochs);
    return { ...c.schedule, totalSteps: c.maxSteps !== undefined ? Math.min(steps, c.maxSteps) : steps };
  }

  /**
   * EMAWeightAveraging / StochasticWeightAveraging: at the end of fit the model's weights become the average, as
   * Lightning's; after SWA the heads' BatchNorm statistics are recomputed for the averaged weights.
   */
  private async applyWeightAverage(): Promise<void> {
    if (!this.engine || this.engine.emaUpdates === 0) return;
    await this.engine.applyAverage();
    if (this.swaCallback && this.splits) await this.engine.recalibrate(this.splits.train, { batchSize: this.datamodule!.batchSize });
  }

  /** This Trainer's callbacks of a class that may appear once (they configure the engine): none or one. */
  private callbacksOf<T extends Callback>(cls: abstract new (...args: never[]) => T): T[] {
    const found = this.callbacks.filter((c): c is T => c instanceof cls);
    if (found.length > 1) throw new ConfigError([`callbacks: more than one ${cls.name}; give one`]);
    return found;
  }

  /** The StochasticWeightAveraging among this Trainer's callbacks, if any. */
  private get swaCallback(): StochasticWeightAveraging | undefined {
    const found = this.callbacksOf(StochasticWeightAveraging);
    return found[0];
  }

  /** SWA: from its first epoch, the SWALR rate of this epoch replaces the schedule's. */
  private async applySwaRate(epoch: number): Promise<void> {
    const swa = this.swaCallback;
    if (!swa || !this.engine) return;
    const first = swa.firstEpoch(this.config.maxEpochs);
    if (epoch < first) return;
    if (swa.startLr === null) swa.startLr = this.engine.lr;  // the rate SWALR anneals from (checkpointed)
    await this.engine.setLrOverride(swa.lrAt(epoch - first));
  }

  /** The GradientAccumulationScheduler among this Trainer's callbacks, if any (checked against accumulateGradBatches). */
  private get accumulationScheduler(): GradientAccumulationScheduler | undefined {
    const found = this.callbacksOf(GradientAccumulationScheduler);
    if (found.length && this.config.accumulateGradBatches !== 1) {
      throw new ConfigError([`accumulateGradBatches: ${this.config.accumulateGradBatches} and a GradientAccumulationScheduler both set the accumulation; give one of them (as Lightning)`]);
    }
    return found[0];
  }

  /** The BackboneFinetuning among this Trainer's callbacks, if any. */
  private get backboneFinetuning(): BackboneFinetuning | undefined {
    const found = this.callbacksOf(BackboneFinetuning);
    return found[0];
  }

  /** BackboneFinetuning: the backbone frozen or training at its rate for `epoch`, before the epoch's first batch. */
  private async applyFinetuning(epoch: number): Promise<void> {
    const ft = this.backboneFinetuning;
    if (!ft || !this.engine) return;
    const { trainable, lrScale, note } = ft.stateAt(epoch);
    await this.engine.setBackboneTrainable(trainable, lrScale);
    if (note && this.isGlobalZero) process.stderr.write(`${note}\n`);
  }

  /** The EMAWeightAveraging callback among this Trainer's, if any (it sets the engine's average). */
  private get weightAveraging(): EMAWeightAveraging | undefined {
    const found = this.callbacksOf(EMAWeightAveraging);
    return found[0];
  }

  /** limitTrainBatches, or overfitBatches when set (Lightning: overfit_batches overrides the limits). */
  private get trainLimit(): number | undefined {
    return this.config.overfitBatches > 0 ? this.config.overfitBatches : this.config.limitTrainBatches;
  }
  private get valLimit(): number | undefined {
    return this.config.overfitBatches > 0 ? this.config.overfitBatches : this.config.limitValBatches;
  }

  /** Batches of the current epoch trained so far (0 between epochs). */
  get batchInEpoch(): number {
    return this.engine?.batchInEpoch ?? 0;
  }

  /** Batches per training epoch (after limitTrainBatches / fastDevRun). */
  get trainBatches(): number {
    // Data-parallel: this rank's shard (padded to a multiple of the world size, as DistributedSampler's).
    if (!this.splits || !this.datamodule) return 0;
    const all = Math.ceil(Math.ceil(this.splits.train.size / this.worldSize) / this.datamodule.batchSize);
    return this.fastDevRunBatches ? Math.min(all, this.fastDevRunBatches) : limitBatches(this.trainLimit, all);
  }

  /** The signal that interrupted the last fit, if any. */
  get interruptedBy(): string | null {
    return this.interrupted;
  }
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Trainer.fit({ ckptPath })'s restore: the engine's state (weights, optimizer, schedule, RNG, counters) from the
 * file, then the callbacks' (restoreCallbackStates). A training state the addon cannot read (its JSON damaged,
 * a field missing: the addon reports HEIMDALL_INTERNAL) or content libtorch refuses (an RNG state:
 * HEIMDALL_TORCH_ERROR) is HEIMDALL_BAD_FILE naming the file.
 */
export async function restoreCheckpoint(engine: NativeEngine, callbacks: readonly Callback[], path: string): Promise<void> {
  let user: string;
  try {
    user = await engine.loadCheckpoint(path);
  } catch (e) {
    const err = HeimdallError.fromNative(e);
    if (err instanceof HeimdallError && err.code === 'HEIMDALL_INTERNAL') {
      throw new HeimdallError('HEIMDALL_BAD_FILE', `${path}: the checkpoint's training state (heimdall.checkpoint) cannot be read: ${err.message}`, { cause: e });
    }
    if (err instanceof HeimdallError && err.code === 'HEIMDALL_TORCH_ERROR') {
      throw new HeimdallError('HEIMDALL_BAD_FILE', `${path}: libtorch refuses the checkpoint's content (${err.message}): the file is damaged or not a heimdall-torch checkpoint`, { cause: e });
    }
    throw err;
  }
  restoreCallbackStates(user, callbacks, path);
}

/**
 * Restores callbacks from a checkpoint's trainer state (the JSON saveCheckpoint() wrote, as the engine returns
 * it): each callback by its state key; states written before state keys held settings are keyed by class name
 * and go to the one callback of the class, when there is only one. A state that is not what saveCheckpoint()
 * writes is refused with HEIMDALL_BAD_FILE naming the file: not JSON, or not objects, before any callback is
 * changed; fields of the wrong kind by the callback that reads them.
 */
export function restoreCallbackStates(userJson: string, callbacks: readonly Callback[], path: string): void {
  const bad = (what: string, cause?: unknown) => new HeimdallError('HEIMDALL_BAD_FILE',
    `${path}: the checkpoint's trainer state ${what}: the file is damaged or was not written by heimdall-torch's saveCheckpoint()`,
    cause !== undefined ? { cause } : undefined);
  let user: unknown;
  try {
    user = JSON.parse(userJson);
  } catch (e) {
    throw bad(`is not JSON (${(e as Error).message})`, e);
  }
  if (!isPlainObject(user)) throw bad('is not a JSON object');
  const saved = user.callbacks ?? {};
  if (!isPlainObject(saved)) throw bad('has "callbacks" that is not an object');
  const perClass = new Map<string, number>();
  for (const c of callbacks) perClass.set(c.constructor.name, (perClass.get(c.constructor.name) ?? 0) + 1);
  const own = (key: string) => (Object.hasOwn(saved, key) ? saved[key] : undefined);
  const states: [Callback, Record<string, unknown>][] = [];
  for (const c of callbacks) {
    if (!c.loadStateDict) continue;
    const legacy = perClass.get(c.constructor.name) === 1 ? own(c.constructor.name) : undefined;
    const state = own(c.stateKey) ?? legacy;
    if (state === undefined || state === null) continue;
    if (!isPlainObject(state)) throw bad(`holds a state of ${c.constructor.name} that is not an object`);
    states.push([c, state]);
  }
  for (const [c, state] of states) {
    try {
      c.loadStateDict!(state);
    } catch (e) {
      if (e instanceof HeimdallError && e.code === 'HEIMDALL_BAD_FILE') throw bad(`holds a state of ${c.constructor.name} that ${e.message}`, e);
      throw e;
    }
  }
}

/** fastDevRun's one line: what ran, its losses, how long. */
function fastDevRunReport(h: FitHistory): string {
  const e = h.epochs[0];
  if (!e) return `heimdall-torch: fastDevRun ended early (${h.reason}) after ${h.seconds.toFixed(1)} s`;
  const val = e.val?.['val/loss'] !== undefined ? `, val/loss ${e.val['val/loss']!.toFixed(4)}` : '';
  return `heimdall-torch: fastDevRun passed: ${h.globalStep} training step(s), train/loss ${e.train['train/loss']?.toFixed(4)}${val} in ${h.seconds.toFixed(1)} s`;
}

/** Batches of outputs ([b, …] each) as one output per name ([Σb, …]). */
function concatOutputs(batches: Record<string, PredictOutput>[]): Record<string, PredictOutput> {
  const out: Record<string, PredictOutput> = {};
  if (!batches.length) return out;
  for (const name of Object.keys(batches[0]!)) {
    const parts = batches.map((b) => b[name]!);
    const data = new Float32Array(parts.reduce((a, p) => a + p.data.length, 0));
    let at = 0;
    for (const p of parts) {
      data.set(p.data, at);
      at += p.data.length;
    }
    out[name] = { data, shape: [parts.reduce((a, p) => a + p.shape[0]!, 0), ...parts[0]!.shape.slice(1)] };
  }
  return out;
}
