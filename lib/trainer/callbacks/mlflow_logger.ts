// MLflowLogger: one MLflow run per training, through the MLflowTracker (its worker thread does the I/O).
// Hyperparameters as params; batch metrics every N steps and epoch metrics, with steps; the learning rate
// (LearningRateMonitor); best and last checkpoints as artifacts; the final test metrics; the run ends
// FINISHED, FAILED with the error, or KILLED on Ctrl-C. Resuming a checkpoint continues the same run.
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MLflowTracker, type MLflowTrackerOptions } from '../../tracking/index.js';
import { Callback, type Metrics, type TrainBatch } from '../callback.js';
import type { Trainer } from '../trainer.js';

export interface MLflowLoggerOptions {
  /** A tracker to log through (default: a new one from the environment / ./mlflow.db). */
  tracker?: MLflowTracker;
  trackerOptions?: MLflowTrackerOptions;
  runName?: string;
  tags?: Record<string, string>;
  /** Log batch metrics every N optimizer steps (default 1). */
  logEveryNSteps?: number;
  /** Upload the best and last checkpoints at the end of fit (default true). */
  logCheckpoints?: boolean;
  /** Extra parameters to log with the hyperparameters. */
  params?: Record<string, unknown>;
}

export class MLflowLogger extends Callback {
  readonly tracker: MLflowTracker;
  private readonly ownsTracker: boolean;
  private readonly options: MLflowLoggerOptions;
  runId: string | null = null;
  private open = false;
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

  logMetrics(metrics: Metrics, step: number): void {
    if (!this.open) return;
    const finite: Metrics = {};
    for (const [k, v] of Object.entries(metrics)) if (typeof v === 'number') finite[k] = v;
    this.tracker.logMetrics(finite, step);
  }

  override async onFitStart(trainer: Trainer): Promise<void> {
    await this.ensureRun();
    const c = trainer.config;
    const params: Record<string, unknown> = {
      trainer: {
        max_epochs: c.maxEpochs,
        device: c.device,
        precision: c.precision,
        grad_clip_norm: c.gradClipNorm,
        accumulate_grad_batches: c.accumulateGradBatches,
        seed: c.seed,
      },
      optimizer: { ...c.optimizer },
      schedule: { ...c.schedule },
      model: trainer.model?.hyperparameters() ?? {},
      data: { batch_size: trainer.datamodule?.batchSize, ...(trainer.datamodule?.hyperparameters?.() ?? {}) },
      ...(this.options.params ?? {}),
    };
    try {
      this.tracker.logParams(params);
    } catch (err) {
      // A resumed run already holds these params; a changed value is refused by MLflow: say so, go on.
      this.tracker.setTags({ 'heimdall.params_warning': (err as Error).message.slice(0, 500) });
    }
    this.tracker.setTags({ 'heimdall.device': trainer.device ?? c.device });
    // The data's inference facts, as an artifact: `heimdall-torch export` reads them from the run.
    const meta = trainer.datamodule?.metadataJson?.();
    if (meta) {
      const dir = join(trainer.rootDir, 'data');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, 'metadata.json');
      writeFileSync(file, meta);
      this.tracker.logArtifact(file, 'data');
    }
  }

  override onTrainBatchEnd(_trainer: Trainer, batch: TrainBatch): void {
    const every = this.options.logEveryNSteps ?? 1;
    if (batch.step % every !== 0 || batch.step === this.lastLoggedStep) return;
    this.lastLoggedStep = batch.step;
    this.logMetrics(batch.metrics, batch.step);
  }

  override onTrainEpochEnd(trainer: Trainer, metrics: Metrics): void {
    const epochMetrics: Metrics = { epoch: trainer.currentEpoch - 1 };
    for (const [k, v] of Object.entries(metrics)) epochMetrics[k.startsWith('train/') ? `${k}_epoch` : k] = v;
    this.logMetrics(epochMetrics, trainer.globalStep);
  }

  override async onFitEnd(trainer: Trainer): Promise<void> {
    await this.logCheckpoints(trainer);
    await this.end('FINISHED');
  }

  override async onTestEnd(trainer: Trainer, metrics: Metrics): Promise<void> {
    await this.ensureRun();
    const final: Metrics = { ...metrics };
    if (metrics['test/loss'] !== undefined) final.final_test_loss = metrics['test/loss'];
    if (metrics['test/mae'] !== undefined) final.final_test_mae = metrics['test/mae'];
    if (metrics['test/position_error_m'] !== undefined) final.final_test_position_error_m = metrics['test/position_error_m'];
    this.logMetrics(final, trainer.globalStep);
    await this.end('FINISHED');
  }

  override async onInterrupt(trainer: Trainer, checkpointPath: string | null): Promise<void> {
    if (checkpointPath && this.open) this.tracker.logArtifact(checkpointPath, 'checkpoints');
    if (this.open) this.tracker.setTags({ 'heimdall.interrupted_by': trainer.interruptedBy ?? 'stop' });
    await this.end('KILLED');
  }

  override async onException(_trainer: Trainer, error: Error): Promise<void> {
    if (!this.open) return;
    this.tracker.setTags({ 'error.type': error.name, 'error.message': error.message.slice(0, 5000) });
    if ((error as { code?: string }).code) this.tracker.setTags({ 'error.code': String((error as { code?: string }).code) });
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
    await this.end('FINISHED');
  }

  /** Ends the run if open and stops the tracker's worker when this logger created it. */
  async close(): Promise<void> {
    if (this.ownsTracker) await this.tracker.close();
    else if (this.open) await this.end('FINISHED');
  }

  private async ensureRun(): Promise<void> {
    if (this.open) return;
    this.runId = await this.tracker.startRun(
      this.runId ? { runId: this.runId, tags: this.options.tags } : { runName: this.options.runName, tags: this.options.tags },
    );
    this.open = true;
  }

  private async end(status: 'FINISHED' | 'FAILED' | 'KILLED'): Promise<void> {
    if (!this.open) return;
    this.open = false;
    const report = await this.tracker.endRun(status);
    if (!report.complete) process.emitWarning(`MLflow: run ${this.runId} not fully delivered yet (${JSON.stringify(report.undelivered)}); it stays in the spool`, 'MLflowLoggerWarning');
  }

  private async logCheckpoints(trainer: Trainer): Promise<void> {
    if (this.options.logCheckpoints === false || !this.open) return;
    const ckpt = trainer.callbacks.find((c) => 'bestModelPath' in c) as { bestModelPath?: string; lastModelPath?: string; bestModelScore?: number } | undefined;
    if (!ckpt) return;
    if (ckpt.bestModelPath) {
      this.tracker.logArtifact(ckpt.bestModelPath, 'checkpoints/best');
      this.tracker.setTags({ 'heimdall.best_checkpoint': ckpt.bestModelPath.split('/').pop()!, 'heimdall.best_score': String(ckpt.bestModelScore) });
    }
    if (ckpt.lastModelPath) this.tracker.logArtifact(ckpt.lastModelPath, 'checkpoints/last');
  }
}
