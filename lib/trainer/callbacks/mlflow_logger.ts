// MLflowLogger: one MLflow run per training, through the MLflowTracker (its worker thread does the I/O).
// Hyperparameters as params; batch metrics every N steps and epoch metrics, with steps; the learning rate
// (LearningRateMonitor); best and last checkpoints as artifacts; the final test metrics; the run ends
// FINISHED, FAILED with the error, or KILLED on Ctrl-C. Resuming a checkpoint continues the same run.
// Parameter keys are snake_case throughout (`optimizer/weight_decay`, `schedule/min_lr`), as the CLI's flags
// read; the run's `model` tag names what was trained (`convnext_atto · localization`).
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TrainerConfig } from '../../config.js';
import { HeimdallError } from '../../errors.js';
import { MLflowTracker, type LoggedModelResult, type LogModelOptions, type MLflowTrackerOptions } from '../../tracking/index.js';
import { Callback, type Metrics, type TrainBatch, type TrainerView } from '../callback.js';

export interface MLflowLoggerOptions {
  /** A tracker to log through (default: a new one from the environment / ./mlflow.db). */
  tracker?: MLflowTracker;
  trackerOptions?: MLflowTrackerOptions;
  runName?: string;
  tags?: Record<string, string>;
  /** Log batch metrics every N optimizer steps (default: the Trainer's `logEveryNSteps`, 50 as Lightning). */
  logEveryNSteps?: number;
  /** Upload the best and last checkpoints at the end of fit (default true). */
  logCheckpoints?: boolean;
  /** Extra parameters to log with the hyperparameters. */
  params?: Record<string, unknown>;
  /** Log the data's splits as MLflow dataset inputs (`mlflow.log_input`) at the start of fit (default true). */
  logDatasets?: boolean;
  /**
   * Log system metrics (CPU, memory, disk, network, GPU) while fit runs (default: the Trainer's
   * `logSystemMetrics`, on). MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL etc. set how often.
   */
  logSystemMetrics?: boolean;
}

export class MLflowLogger extends Callback {
  override get runsInFastDevRun(): boolean {
    return false;
  }
  override get rankZeroOnly(): boolean {
    return true;
  }
  readonly tracker: MLflowTracker;
  private readonly ownsTracker: boolean;
  private readonly options: MLflowLoggerOptions;
  runId: string | null = null;
  private open = false;
  /** How this logger last ended its run (a reopened run ends the same way). */
  private endedAs: 'FINISHED' | 'FAILED' | 'KILLED' | null = null;
  private lastLoggedStep = -1;

  constructor(options: MLflowLoggerOptions = {}) {
    super();
    this.options = options;
    this.ownsTracker = !options.tracker;
    // The Trainer handles Ctrl-C itself (stop at a batch boundary, checkpoint, end KILLED).
    this.tracker = options.tracker ?? new MLflowTracker({ handleSignals: false, ...options.trackerOptions });
  }

  override get stateKey(): string {
    return 'MLflowLogger';
  }

  /** Whether fit logs system metrics (this logger's `logSystemMetrics`, else the Trainer's). */
  logsSystemMetrics(trainerDefault: boolean): boolean {
    return this.options.logSystemMetrics ?? trainerDefault;
  }

  /**
   * The node name in a machine's system metric keys: none on one machine (`system/…`); on several, the node's
   * MLFLOW_SYSTEM_METRICS_NODE_ID, else `node-<NODE_RANK>` (`system/node-1/…`).
   */
  systemMetricsNodeId(numNodes: number, nodeRank: number): string | undefined {
    return numNodes > 1 ? (this.tracker.config.systemMetricsNodeId ?? `node-${nodeRank}`) : undefined;
  }

  logMetrics(metrics: Metrics, step: number): void {
    if (!this.open) return;
    const finite: Metrics = {};
    for (const [k, v] of Object.entries(metrics)) if (typeof v === 'number') finite[k] = v;
    this.tracker.logMetrics(finite, step);
  }

  override async onFitStart(trainer: TrainerView): Promise<void> {
    const c = trainer.config;
    await this.ensureRun(this.logsSystemMetrics(c.logSystemMetrics), this.systemMetricsNodeId(trainer.numNodes, 0));  // rank 0 is on node 0
    const params: Record<string, unknown> = {
      ...trainerParams(c),
      model: trainer.model?.hyperparameters() ?? {},
      data: snakeKeys({ batch_size: trainer.datamodule?.batchSize, ...(trainer.datamodule?.hyperparameters?.() ?? {}) }),
      ...(trainer.worldSize > 1 ? { distributed: { world_size: trainer.worldSize, backend: trainer.distributedBackend } } : {}),
      ...(this.options.params ?? {}),
    };
    try {
      this.tracker.logParams(params);
    } catch (err) {
      // A resumed run already holds these params; a changed value is refused by MLflow: say so, go on.
      this.tracker.setTags({ 'heimdall.params_warning': (err as Error).message.slice(0, 500) });
    }
    this.tracker.setTags({
      'heimdall.device': trainer.device ?? c.device, ...(trainer.model && !this.options.tags?.model ? { model: modelTag(trainer.model) } : {}),
      // The run's description in MLflow's UI: what was trained on what, in one paragraph (a caller's note wins).
      ...(this.options.tags?.['mlflow.note.content'] ? {} : { 'mlflow.note.content': runDescription(trainer) }),
    });
    // The data's inference facts, as an artifact: `heimdall-torch export` reads them from the run.
    const meta = trainer.datamodule?.metadataJson?.();
    if (meta) {
      const dir = join(trainer.rootDir, 'data');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, 'metadata.json');
      writeFileSync(file, meta);
      this.tracker.logArtifact(file, 'data');
    }
    this.logDatasets(trainer);
  }

  /** The data's splits as dataset inputs (training / validation / testing); a failure is a warning, not an error. */
  private logDatasets(trainer: TrainerView): void {
    const dm = trainer.datamodule;
    if (this.options.logDatasets === false || !dm?.mlflowDatasets) return;
    try {
      this.tracker.logInputs(dm.mlflowDatasets());
    } catch (err) {
      process.emitWarning(`MLflow: the data's dataset inputs are not logged: ${(err as Error).message}`, 'MLflowLoggerWarning');
    }
  }

  override onTrainBatchEnd(trainer: TrainerView, batch: TrainBatch): void {
    const every = this.options.logEveryNSteps ?? trainer.config.logEveryNSteps;
    if (batch.step % every !== 0 || batch.step === this.lastLoggedStep) return;
    this.lastLoggedStep = batch.step;
    this.logMetrics(batch.metrics, batch.step);
  }

  /** A validation inside the epoch (valCheckInterval): its val/* metrics at the current step. */
  override onValidationEnd(trainer: TrainerView, metrics: Metrics): void {
    const val = Object.fromEntries(Object.entries(metrics).filter(([k]) => k.startsWith('val/')));
    this.logMetrics(val, trainer.globalStep);
  }

  override onTrainEpochEnd(trainer: TrainerView, metrics: Metrics): void {
    const epochMetrics: Metrics = { epoch: trainer.currentEpoch - 1 };
    for (const [k, v] of Object.entries(metrics)) epochMetrics[k.startsWith('train/') ? `${k}_epoch` : k] = v;
    this.logMetrics(epochMetrics, trainer.globalStep);
  }

  override async onFitEnd(trainer: TrainerView): Promise<void> {
    await this.logCheckpoints(trainer);
    await this.end('FINISHED');
  }

  override async onTestEnd(trainer: TrainerView, metrics: Metrics): Promise<void> {
    await this.ensureRun();
    const final: Metrics = { ...metrics };
    if (metrics['test/loss'] !== undefined) final.final_test_loss = metrics['test/loss'];
    if (metrics['test/mae'] !== undefined) final.final_test_mae = metrics['test/mae'];
    if (metrics['test/position_error_m'] !== undefined) final.final_test_position_error_m = metrics['test/position_error_m'];
    this.logMetrics(final, trainer.globalStep);
    await this.end(this.reopenedStatus());
  }

  override async onInterrupt(trainer: TrainerView, checkpointPath: string | null): Promise<void> {
    if (checkpointPath && this.open) this.tracker.logArtifact(checkpointPath, 'checkpoints');
    if (this.open) this.tracker.setTags({ 'heimdall.interrupted_by': trainer.interruptedBy ?? 'stop' });
    await this.end('KILLED');
  }

  override async onException(_trainer: TrainerView, error: Error): Promise<void> {
    if (!this.open) return;
    this.tracker.setTags({ 'error.type': error.name, 'error.message': error.message.slice(0, 5000) });
    // HeimdallErrors' codes, and Node's (ENOENT, …)
    const code = error instanceof HeimdallError ? error.code : (error as { code?: unknown }).code;
    if (typeof code === 'string' && code) this.tracker.setTags({ 'error.code': code });
    await this.end('FAILED');
  }

  override stateDict(): Record<string, unknown> {
    return { runId: this.runId };
  }
  override loadStateDict(state: Record<string, unknown>): void {
    if (typeof state.runId === 'string') this.runId = state.runId;
  }

  /** Logs a file or a directory (e.g. an exported model) as artifacts of this run; reopens the run if needed. */
  async logArtifact(path: string, artifactPath?: string, tags?: Record<string, string>): Promise<void> {
    await this.ensureRun();
    if (statSync(path).isDirectory()) this.tracker.logArtifacts(path, artifactPath);
    else this.tracker.logArtifact(path, artifactPath);
    if (tags) this.tracker.setTags(tags);
    await this.end(this.reopenedStatus());
  }

  /**
   * Logs the MLflow model folder that `write` makes as an MLflow 3 logged model of this run (MLflowTracker.logModel:
   * under the model's own artifact location, linked as the run's output at `opts.step`), sets `tags` on the run;
   * reopens the run if needed.
   */
  async logModel(write: (model: { modelId: string | null; artifactLocation: string }) => string, opts: LogModelOptions, tags?: Record<string, string>): Promise<LoggedModelResult> {
    await this.ensureRun();
    try {
      const r = await this.tracker.logModel(write, opts);
      if (tags) this.tracker.setTags(tags);
      return r;
    } finally {
      await this.end(this.reopenedStatus());
    }
  }

  /**
   * Runs `fn` with the tracker while this logger's run is open: during fit as it is, after fit (test(), exports)
   * by reopening the run and ending it again as fit ended it.
   */
  async withRun<T>(fn: (tracker: MLflowTracker, runId: string) => T | Promise<T>): Promise<T> {
    const reopened = !this.open;
    await this.ensureRun();
    try {
      return await fn(this.tracker, this.runId!);
    } finally {
      if (reopened) await this.end(this.reopenedStatus());
    }
  }

  /** Ends the run if open and stops the tracker's worker when this logger created it. */
  async close(): Promise<void> {
    if (this.ownsTracker) await this.tracker.close();
    else if (this.open) await this.end('FINISHED');
  }

  /** Opens (or reopens) the run; system metrics only for fit (`logSystemMetrics`), not for a reopened run. */
  private async ensureRun(logSystemMetrics = false, systemMetricsNodeId?: string): Promise<void> {
    if (this.open) return;
    const common = { tags: this.options.tags, logSystemMetrics, systemMetricsNodeId };
    this.runId = await this.tracker.startRun(this.runId ? { runId: this.runId, ...common } : { runName: this.options.runName, ...common });
    this.open = true;
  }

  /** A run reopened after fit (test(), an exported model) ends as fit ended it: a KILLED run stays KILLED. */
  private reopenedStatus(): 'FINISHED' | 'FAILED' | 'KILLED' {
    return this.endedAs ?? 'FINISHED';
  }

  private async end(status: 'FINISHED' | 'FAILED' | 'KILLED'): Promise<void> {
    if (!this.open) return;
    this.open = false;
    this.endedAs = status;
    const report = await this.tracker.endRun(status);
    if (!report.complete) process.emitWarning(`MLflow: run ${this.runId} not fully delivered yet (${JSON.stringify(report.undelivered)}); it stays in the spool`, 'MLflowLoggerWarning');
  }

  private async logCheckpoints(trainer: TrainerView): Promise<void> {
    if (this.options.logCheckpoints === false || !this.open) return;
    const ckpt = trainer.checkpointCallback;
    if (!ckpt) return;
    if (ckpt.bestModelPath) {
      this.tracker.logArtifact(ckpt.bestModelPath, 'checkpoints/best');
      this.tracker.setTags({ 'heimdall.best_checkpoint': ckpt.bestModelPath.split('/').pop()!, 'heimdall.best_score': String(ckpt.bestModelScore) });
    }
    if (ckpt.lastModelPath) this.tracker.logArtifact(ckpt.lastModelPath, 'checkpoints/last');
  }
}

/** The run's `model` tag: what was trained, `<variant> · <head>` (e.g. `convnext_atto · localization`). */
export function modelTag(model: { readonly variant: string; readonly head: string }): string {
  return `${model.variant} · ${model.head}`; // the variant names its family (convnext_atto, convnextv2_atto)
}

/**
 * One paragraph for the run's description (`mlflow.note.content`): the model (variant, head, size, inputs), the
 * data (what, how many samples, how they were split into batches), the epochs, device, precision and optimizer.
 */
export function runDescription(trainer: TrainerView): string {
  const c = trainer.config;
  const m = trainer.model;
  const mh = m?.hyperparameters() ?? {};
  const d = trainer.datamodule;
  const dh = d?.hyperparameters?.() ?? {};
  const params = typeof mh.parameters === 'number' ? `${(mh.parameters / 1e6).toFixed(1)}M parameters, ` : '';
  const origin = mh.pretrained ? `, from the pretrained weights ${String(mh.pretrained)}${mh.freeze_backbone ? ' with the backbone frozen' : ''}` : '';
  const model = m ? `${m.variant} with a ${m.head} head (${params}${String(mh.in_chans ?? '?')} input channels${origin})` : 'a model';
  const samples = typeof dh.samples === 'number' && !d?.describe().includes(String(dh.samples)) ? ` (${dh.samples} samples)` : '';
  const data = d ? `${d.describe()}${samples}` : 'its data';
  const batches = trainer.trainBatches && d ? ` (${trainer.trainBatches} training batches of ${d.batchSize} per epoch)` : '';
  const o = c.optimizer;
  const optimizer = `${o.name === 'adamw' ? 'AdamW' : 'SGD'} (lr ${o.lr}, weight decay ${o.weightDecay}) and a ${c.schedule.name} schedule`;
  return `heimdall-torch trained ${model} on ${data}${batches} for up to ${c.maxEpochs} epochs on ${trainer.device ?? c.device} ` +
    `at ${c.precision === '32' ? '32-bit' : c.precision} precision, with ${optimizer}; training seed ${c.seed}.`;
}

/** `weightDecay` → `weight_decay`: parameter keys as the CLI's flags read. */
export function snakeCase(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function snakeKeys(o: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [snakeCase(k), v]));
}

/** The optimizer's settings that apply to it (AdamW's betas and eps, or SGD's momentum, dampening, nesterov). */
const OPTIMIZER_PARAMS = {
  adamw: ['name', 'lr', 'weightDecay', 'beta1', 'beta2', 'eps'],
  sgd: ['name', 'lr', 'weightDecay', 'momentum', 'dampening', 'nesterov'],
} as const;

/** The Trainer's hyperparameters as MLflow params: `trainer/…`, `optimizer/…`, `schedule/…`, snake_case keys. */
export function trainerParams(c: TrainerConfig): Record<string, Record<string, unknown>> {
  const optimizer = Object.fromEntries(OPTIMIZER_PARAMS[c.optimizer.name].map((k) => [k, c.optimizer[k]]));
  return {
    trainer: snakeKeys({
      maxEpochs: c.maxEpochs, device: c.device, precision: c.precision, gradClipNorm: c.gradClipNorm,
      accumulateGradBatches: c.accumulateGradBatches, seed: c.seed,
    }),
    optimizer: snakeKeys(optimizer),
    schedule: snakeKeys(c.schedule),
  };
}
