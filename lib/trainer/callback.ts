// Callbacks: small classes with a few hooks and their own state, called in Lightning's order.
// Every hook may be async: the Trainer awaits it before the next phase. Batch hooks run while the
// native loop goes on with the next batch, so a slow hook delays only the batches queued behind it
// being reported — never the training itself.
import type { BatchEvent, EpochResult } from '../native.js';
import type { Trainer } from './trainer.js';

export type Awaitable<T> = T | Promise<T>;

/** Metrics of one epoch, keyed as MLflow users write them: `train/loss`, `val/loss`, `val/position_error_m`. */
export type Metrics = Record<string, number>;

/** One training batch as callbacks see it: the native batch event, metrics keyed `train/loss`, `train/mae`, … */
export type TrainBatch = BatchEvent;

export abstract class Callback {
  /** Key under which this callback's state is stored in checkpoints (unique per Trainer). */
  get stateKey(): string {
    return this.constructor.name;
  }
  onFitStart?(trainer: Trainer): Awaitable<void>;
  onTrainStart?(trainer: Trainer): Awaitable<void>;
  onTrainEpochStart?(trainer: Trainer, epoch: number): Awaitable<void>;
  onTrainBatchStart?(trainer: Trainer, epoch: number, batch: number): Awaitable<void>;
  onTrainBatchEnd?(trainer: Trainer, batch: TrainBatch): Awaitable<void>;
  onValidationStart?(trainer: Trainer): Awaitable<void>;
  onValidationEpochEnd?(trainer: Trainer, metrics: Metrics): Awaitable<void>;
  onTrainEpochEnd?(trainer: Trainer, metrics: Metrics): Awaitable<void>;
  onTrainEnd?(trainer: Trainer): Awaitable<void>;
  onFitEnd?(trainer: Trainer): Awaitable<void>;
  onTestEnd?(trainer: Trainer, metrics: Metrics): Awaitable<void>;
  /** Training was interrupted (Ctrl-C / SIGTERM / trainer.stop()); a checkpoint has been written. */
  onInterrupt?(trainer: Trainer, checkpointPath: string | null): Awaitable<void>;
  onException?(trainer: Trainer, error: Error): Awaitable<void>;
  /** State to put in checkpoints; `loadStateDict` restores it on resume. */
  stateDict?(): Record<string, unknown>;
  loadStateDict?(state: Record<string, unknown>): void;
}

/** Prefixes native metric names with the split: loss → train/loss. */
export function prefixed(split: string, metrics: Record<string, number>): Metrics {
  const out: Metrics = {};
  for (const [k, v] of Object.entries(metrics)) out[`${split}/${k}`] = v;
  return out;
}

export function toTrainBatch(e: BatchEvent): TrainBatch {
  return { epoch: e.epoch, batch: e.batch, step: e.step, batchSize: e.batchSize, lr: e.lr, samplesPerSec: e.samplesPerSec, metrics: prefixed('train', e.metrics) };
}

export type { EpochResult };
