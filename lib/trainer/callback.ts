// Callbacks: small classes with a few hooks and their own state, called in Lightning's order.
// Every hook may be async: the Trainer awaits it before the next phase. Batch hooks run while the
// native loop goes on with the next batch, so a slow hook delays only the batches queued behind it
// being reported — never the training itself.
// Callbacks see the Trainer through `TrainerView` (declared here, implemented by trainer.ts): no callback
// imports the Trainer, and the Trainer creates none by class beyond its defaults (callbacks/defaults.ts).
import type { TrainerConfig } from '../config.js';
import type { ConvNeXt } from '../model.js';
import type { BatchEvent, EpochResult, PredictOutput } from '../native.js';
import type { DataModule } from './data.js';

export type Awaitable<T> = T | Promise<T>;

/** Metrics of one epoch, keyed as MLflow users write them: `train/loss`, `val/loss`, `val/position_error_m`. */
export type Metrics = Record<string, number>;

/** One training batch as callbacks see it: the native batch event, metrics keyed `train/loss`, `train/mae`, … */
export type TrainBatch = BatchEvent;

/** What a checkpointing callback (ModelCheckpoint) offers: `ckptPath: 'best' | 'last'` resolve through it. */
export interface CheckpointCallback {
  readonly bestModelPath: string | undefined;
  readonly bestModelScore: number | undefined;
  readonly lastModelPath: string | undefined;
}

/** The Trainer as callbacks see it. */
export interface TrainerView {
  readonly config: TrainerConfig;
  readonly callbacks: readonly Callback[];
  /** The folder for checkpoints and outputs. */
  readonly rootDir: string;
  /** The engine's device (`cpu`, `cuda:0`), once fit has started. */
  readonly device: string | undefined;
  /** The learning rate of the next optimizer step. */
  readonly lr: number | undefined;
  readonly currentEpoch: number;
  /** Batches of the current epoch trained so far (0 between epochs; > 0 at a validation inside an epoch). */
  readonly batchInEpoch: number;
  readonly globalStep: number;
  /** Batches per training epoch. */
  readonly trainBatches: number;
  /** Metrics of the latest epoch (`train/…`, `val/…`). */
  readonly callbackMetrics: Metrics;
  readonly model: ConvNeXt | undefined;
  readonly datamodule: DataModule | undefined;
  /** The signal (or stop() reason) that interrupted fit, if any. */
  readonly interruptedBy: string | null;
  /** The first ModelCheckpoint among the callbacks, as Lightning's `trainer.checkpoint_callback`. */
  readonly checkpointCallback: CheckpointCallback | undefined;
  /** Set (by EarlyStopping) to end fit after the current epoch. */
  shouldStop: boolean;
  /** Data-parallel: this process's rank (0 when alone) and the number of ranks. */
  readonly globalRank: number;
  readonly worldSize: number;
  /** Machines in the job (Lightning's `trainer.num_nodes`): ranks over ranks per node. */
  readonly numNodes: number;
  /** The process group's backend (gloo, nccl) when worldSize > 1. */
  readonly distributedBackend: string | undefined;
  logMetrics(metrics: Metrics, step?: number): void;
  /** The model's outputs on a data module's test split (else val, else train), with the current weights. */
  predict(input: DataModule): Promise<Record<string, PredictOutput>>;
  saveCheckpoint(path: string): Promise<void>;
  stop(reason?: string): void;
  /** Ends fit at the next batch boundary as a normal end (Timer's `maxTime`), with a checkpoint to resume from. */
  endFit(reason: 'max_time'): void;
}

export abstract class Callback {
  /**
   * Key under which this callback's state is stored in checkpoints, unique per Trainer. Callbacks with state
   * override it with `stateKeyOf(settings)`, as Lightning does, so that several instances of a class coexist
   * (`ModelCheckpoint{"monitor":"val/loss","mode":"min"}`).
   */
  get stateKey(): string {
    return this.constructor.name;
  }
  /**
   * Runs on rank 0 only in data-parallel training (Lightning's `@rank_zero_only`): loggers, checkpoints, progress.
   * Callbacks that decide (EarlyStopping) run on every rank; the Trainer makes the ranks agree.
   */
  get rankZeroOnly(): boolean {
    return false;
  }
  /** `ClassName{"setting":value,…}` from the settings that tell instances of a class apart. */
  protected stateKeyOf(settings: Record<string, unknown>): string {
    const defined = Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined));
    return `${this.constructor.name}${JSON.stringify(defined)}`;
  }
  /** False for callbacks that write files or runs (checkpoints, loggers) or end training (EarlyStopping): fastDevRun skips them. */
  get runsInFastDevRun(): boolean {
    return true;
  }
  onFitStart?(trainer: TrainerView): Awaitable<void>;
  onTrainStart?(trainer: TrainerView): Awaitable<void>;
  onTrainEpochStart?(trainer: TrainerView, epoch: number): Awaitable<void>;
  onTrainBatchStart?(trainer: TrainerView, epoch: number, batch: number): Awaitable<void>;
  onTrainBatchEnd?(trainer: TrainerView, batch: TrainBatch): Awaitable<void>;
  onValidationStart?(trainer: TrainerView): Awaitable<void>;
  onValidationEpochEnd?(trainer: TrainerView, metrics: Metrics): Awaitable<void>;
  /**
   * After a validation inside a training epoch (valCheckInterval), once onValidationEpochEnd has run: `metrics` are
   * the training metrics so far and the validation's (`trainer.batchInEpoch` batches of the epoch are trained). An
   * epoch's last validation is followed by onTrainEpochEnd instead.
   */
  onValidationEnd?(trainer: TrainerView, metrics: Metrics): Awaitable<void>;
  onTrainEpochEnd?(trainer: TrainerView, metrics: Metrics): Awaitable<void>;
  onTrainEnd?(trainer: TrainerView): Awaitable<void>;
  onFitEnd?(trainer: TrainerView): Awaitable<void>;
  /** After test(): its metrics, and the data module it tested (the fit's, or the one given to test()). */
  onTestEnd?(trainer: TrainerView, metrics: Metrics, data: DataModule): Awaitable<void>;
  /** predict(): before the first batch, after each batch (its outputs and sample indices), after the last, at the end. */
  onPredictStart?(trainer: TrainerView): Awaitable<void>;
  onPredictBatchEnd?(trainer: TrainerView, prediction: Record<string, PredictOutput>, batchIndices: number[], batchIdx: number): Awaitable<void>;
  onPredictEpochEnd?(trainer: TrainerView, predictions: Record<string, PredictOutput>[], batchIndices: number[][]): Awaitable<void>;
  onPredictEnd?(trainer: TrainerView): Awaitable<void>;
  /** Training was interrupted (Ctrl-C / SIGTERM / trainer.stop()); a checkpoint has been written. */
  onInterrupt?(trainer: TrainerView, checkpointPath: string | null): Awaitable<void>;
  onException?(trainer: TrainerView, error: Error): Awaitable<void>;
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
  return { epoch: e.epoch, batch: e.batch, step: e.step, batchSize: e.batchSize, lr: e.lr, samplesPerSec: e.samplesPerSec, time: e.time, metrics: prefixed('train', e.metrics) };
}

export type { EpochResult };
