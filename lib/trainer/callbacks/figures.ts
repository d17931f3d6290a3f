// FigureLogger: pictures of a training a person would rather look at than read. At the end of fit, the loss
// and learning-rate curves per epoch; after test(), by the model's head: localization — a map of the test
// transmitters (true vs predicted, error lines, 1σ ellipses, receivers) and the error CDF against the
// centroid baseline; classification — a confusion matrix; regression — predicted vs true.
// Each figure goes to `<rootDir>/figures/<name>.{png,svg,vl.json}` and, with an MLflowLogger, to the run as
// MLflow images (the `mlflow.log_image` layout, see lib/figures/mlflow_images.ts) and as `figures/` artifacts.
// A figure that cannot be made is one warning: the training, the test and the run go on.
import { join } from 'node:path';
import { HeimdallDataModule } from '../../data/heimdall.js';
import { logWrittenFigures, writeFigures, type FigureRequest, type WrittenFigure } from '../../figures/mlflow_images.js';
import {
  confusionCounts, confusionMatrixSpec, errorCdfSpec, localizationMapSpec, predictedVsTrueSpec, trainingCurvesSpec,
  type EpochPoint, type ReceiverPoint,
} from '../../figures/specs.js';
import { haversineM } from '../../data/heimdall.js';
import type { PositionScale, PredictOutput } from '../../native.js';
import { Callback, type Metrics, type TrainerView } from '../callback.js';
import type { DataModule } from '../data.js';
import { MLflowLogger } from './mlflow_logger.js';

export interface FigureLoggerOptions {
  /** Loss and learning-rate curves at the end of fit (default true). */
  trainingCurves?: boolean;
  /** Figures of the test split after test() (default true). */
  test?: boolean;
  /** At most this many transmitters on the localization map (default 300; the CDF uses all). */
  maxMapPoints?: number;
  /** Class names for the confusion matrix (default 0, 1, …). */
  classNames?: string[];
  /** Output names for predicted vs true (default `output 0`, …). */
  outputNames?: string[];
  /** Folder for the files (default `<rootDir>/figures`). */
  dir?: string;
}

/** The image keys, as the MLflow UI groups them. */
export const FIGURE_KEYS = {
  trainingCurves: 'train/loss_and_lr',
  positionMap: 'test/position_map',
  errorCdf: 'test/error_cdf',
  confusionMatrix: 'test/confusion_matrix',
  predictedVsTrue: 'test/predicted_vs_true',
} as const;

export class FigureLogger extends Callback {
  /** Data-parallel: rank 0 alone (it writes files, logs to the run or prints). */
  override get rankZeroOnly(): boolean {
    return true;
  }
  override get runsInFastDevRun(): boolean {
    return false;
  }
  private readonly options: FigureLoggerOptions;
  private epochs: EpochPoint[] = [];
  private epochLr: number | undefined;
  /** Every figure written so far (local paths), in order. */
  readonly written: WrittenFigure[] = [];

  constructor(options: FigureLoggerOptions = {}) {
    super();
    this.options = options;
  }

  override get stateKey(): string {
    return 'FigureLogger';
  }

  /** The folder the figures go to. */
  dirFor(trainer: TrainerView): string {
    return this.options.dir ?? join(trainer.rootDir, 'figures');
  }

  override onTrainEpochStart(trainer: TrainerView): void {
    this.epochLr = trainer.lr; // the rate the epoch starts with, as LearningRateMonitor logs it
  }

  override onTrainEpochEnd(trainer: TrainerView, metrics: Metrics): void {
    const epoch = trainer.currentEpoch - 1;
    this.epochs = this.epochs.filter((e) => e.epoch !== epoch);
    this.epochs.push({ epoch, trainLoss: metrics['train/loss'], valLoss: metrics['val/loss'], lr: this.epochLr ?? trainer.lr });
  }

  override async onFitEnd(trainer: TrainerView): Promise<void> {
    if (this.options.trainingCurves === false || !this.epochs.length) return;
    await this.publish(trainer, () => [{ name: 'training_curves', key: FIGURE_KEYS.trainingCurves, spec: trainingCurvesSpec(this.epochs, { lossName: lossName(trainer) }) }]);
  }

  override async onTestEnd(trainer: TrainerView, _metrics: Metrics, data?: DataModule): Promise<void> {
    if (this.options.test === false) return;
    const module = data ?? trainer.datamodule;
    if (!module || !trainer.model) return;
    await this.publish(trainer, async () => testFigures(trainer.model!.head, await trainer.predict(module), module, this.options));
  }

  override stateDict(): Record<string, unknown> {
    return { epochs: this.epochs };
  }
  override loadStateDict(state: Record<string, unknown>): void {
    if (Array.isArray(state.epochs)) this.epochs = state.epochs as EpochPoint[];
  }

  /** Builds, renders, writes and logs figures; never throws (a failure is one warning). */
  private async publish(trainer: TrainerView, build: () => FigureRequest[] | Promise<FigureRequest[]>): Promise<void> {
    const problems: string[] = [];
    try {
      const figures = await build();
      if (!figures.length) return;
      const r = await writeFigures(figures, { dir: this.dirFor(trainer), step: trainer.globalStep });
      for (const f of r.failed) problems.push(`${f.name}: ${f.error.message}`);
      this.written.push(...r.written);
      const logger = trainer.callbacks.find((c): c is MLflowLogger => c instanceof MLflowLogger);
      if (logger && r.written.length) await logger.withRun((tracker) => logWrittenFigures(tracker, r.written));
    } catch (err) {
      problems.push((err as Error).message);
    }
    if (problems.length) process.emitWarning(`heimdall-torch: figures not made (${problems.join('; ')}); training goes on`, 'FigureWarning');
  }
}

function lossName(trainer: TrainerView): string {
  const head = trainer.model?.head;
  return head === 'localization' ? 'loss (Gaussian NLL)' : head === 'classification' ? 'loss (cross-entropy)' : head === 'regression' ? 'loss (MSE)' : 'loss';
}

function argmaxRows(o: PredictOutput): Int32Array {
  const [n, k] = [o.shape[0] ?? 0, o.shape[1] ?? 1];
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (o.data[i * k + j]! > o.data[i * k + best]!) best = j;
    out[i] = best;
  }
  return out;
}

function rows(data: ArrayLike<number>, n: number, k: number): number[][] {
  return Array.from({ length: n }, (_, i) => Array.from({ length: k }, (_, j) => data[i * k + j]!));
}

function toDegrees(s: PositionScale, normalized: ArrayLike<number>, n: number): Array<[number, number]> {
  return Array.from({ length: n }, (_, i) => [s.latCenter + normalized[2 * i]! * s.latScale, s.lonCenter + normalized[2 * i + 1]! * s.lonScale]);
}

/** The test split's figures for a model head, from the model's outputs on that split and the data's targets. */
export async function testFigures(head: string, outputs: Record<string, PredictOutput>, data: DataModule, options: FigureLoggerOptions = {}): Promise<FigureRequest[]> {
  if (head === 'localization') return localizationFigures(outputs, data, options);
  const split = (await data.setup()).test ? 'test' : 'val';
  const truth = data.targets?.(split);
  if (!truth) return [];
  if (head === 'classification' && outputs.logits) {
    const predicted = argmaxRows(outputs.logits);
    const k = outputs.logits.shape[1] ?? 1;
    return [{ name: 'confusion_matrix', key: FIGURE_KEYS.confusionMatrix, spec: confusionMatrixSpec({ counts: confusionCounts(truth.data, predicted, k), labels: options.classNames?.slice(0, k) }) }];
  }
  if (head === 'regression' && outputs.outputs) {
    const [n, k] = [outputs.outputs.shape[0] ?? 0, outputs.outputs.shape[1] ?? 1];
    return [{
      name: 'predicted_vs_true', key: FIGURE_KEYS.predictedVsTrue,
      spec: predictedVsTrueSpec({ truth: rows(truth.data, n, k), predicted: rows(outputs.outputs.data, n, k), names: options.outputNames?.slice(0, k) }),
    }];
  }
  return [];
}

async function localizationFigures(outputs: Record<string, PredictOutput>, data: DataModule, options: FigureLoggerOptions): Promise<FigureRequest[]> {
  const pos = outputs.positions;
  const scale = data.positionScale;
  if (!pos || !scale) return []; // positions in degrees need the target normalisation
  const n = pos.shape[0] ?? 0;
  const splits = await data.setup();
  let truth: Array<[number, number]>;
  let baselineM: number[] | undefined;
  let receivers: ReceiverPoint[] | undefined;
  if (data instanceof HeimdallDataModule && splits.test) {
    const p = data.positions(splits.test);
    truth = Array.from({ length: p.length / 2 }, (_, i) => [p[2 * i]!, p[2 * i + 1]!]);
    baselineM = data.centroidErrors(splits.train, splits.test);
    receivers = data.info.receivers.map((r) => ({ name: r.name, lat: r.lat, lon: r.lon }));
  } else {
    const t = data.targets?.(splits.test ? 'test' : 'val');
    if (!t) return [];
    truth = toDegrees(scale, t.data, t.shape[0] ?? 0);
    const train = data.targets?.('train');
    if (train && (train.shape[0] ?? 0) > 0) {
      const tr = toDegrees(scale, train.data, train.shape[0]!);
      const c = tr.reduce((a, [la, lo]) => [a[0] + la / tr.length, a[1] + lo / tr.length], [0, 0]);
      baselineM = truth.map(([la, lo]) => haversineM(c[0], c[1], la, lo));
    }
  }
  if (truth.length !== n) return [];
  const predicted = toDegrees(scale, pos.data, n);
  const u = outputs.uncertainties?.data;
  const sigma = u ? Array.from({ length: n }, (_, i) => [u[2 * i]! * scale.latScale, u[2 * i + 1]! * scale.lonScale] as [number, number]) : undefined;
  const modelKm = truth.map(([la, lo], i) => haversineM(la, lo, predicted[i]![0], predicted[i]![1]) / 1000);
  const shown = Math.min(n, options.maxMapPoints ?? 300);
  return [
    {
      name: 'position_map', key: FIGURE_KEYS.positionMap,
      spec: localizationMapSpec({ truth: truth.slice(0, shown), predicted: predicted.slice(0, shown), sigma: sigma?.slice(0, shown), receivers, total: n }),
    },
    { name: 'error_cdf', key: FIGURE_KEYS.errorCdf, spec: errorCdfSpec({ modelKm, baselineKm: baselineM?.map((m) => m / 1000) }) },
  ];
}
