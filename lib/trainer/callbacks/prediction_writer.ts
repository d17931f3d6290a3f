// BasePredictionWriter: Lightning's callback for writing predictions as they are made (`trainer.predict`), batch
// by batch and/or once at the end, so that predicting a large data set never holds all its outputs in memory
// (`predict(data, { returnPredictions: false })`). Subclass it and implement writeOnBatchEnd and/or
// writeOnEpochEnd; CsvPredictionWriter is a ready one.
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { PredictOutput } from '../../native.js';
import { Callback, type TrainerView } from '../callback.js';

export type WriteInterval = 'batch' | 'epoch' | 'batch_and_epoch';
export type Prediction = Record<string, PredictOutput>;

export abstract class BasePredictionWriter extends Callback {
  override get rankZeroOnly(): boolean {
    return true;
  }
  readonly writeInterval: WriteInterval;
  constructor(writeInterval: WriteInterval = 'batch') {
    super();
    if (!['batch', 'epoch', 'batch_and_epoch'].includes(writeInterval)) {
      throw new Error(`BasePredictionWriter: writeInterval must be batch, epoch or batch_and_epoch (got ${String(writeInterval)})`);
    }
    this.writeInterval = writeInterval;
  }
  /** One batch's outputs (each [batch, …]) and the indices of its samples in the predicted data set. */
  writeOnBatchEnd(_trainer: TrainerView, _prediction: Prediction, _batchIndices: number[], _batchIdx: number): void | Promise<void> {
    throw new Error(`${this.constructor.name}: writeInterval '${this.writeInterval}' needs writeOnBatchEnd`);
  }
  /** Every batch's outputs and sample indices, in order (kept in memory for this call only). */
  writeOnEpochEnd(_trainer: TrainerView, _predictions: Prediction[], _batchIndices: number[][]): void | Promise<void> {
    throw new Error(`${this.constructor.name}: writeInterval '${this.writeInterval}' needs writeOnEpochEnd`);
  }
  override async onPredictBatchEnd(trainer: TrainerView, prediction: Prediction, batchIndices: number[], batchIdx: number): Promise<void> {
    if (this.writeInterval !== 'epoch') await this.writeOnBatchEnd(trainer, prediction, batchIndices, batchIdx);
  }
  override async onPredictEpochEnd(trainer: TrainerView, predictions: Prediction[], batchIndices: number[][]): Promise<void> {
    if (this.writeInterval !== 'batch') await this.writeOnEpochEnd(trainer, predictions, batchIndices);
  }
  /** True when the epoch-end call needs every batch's outputs kept until then. */
  get keepsPredictions(): boolean {
    return this.writeInterval !== 'batch';
  }
}

/**
 * Writes one CSV row per sample as batches come: `index` (the sample's index in the predicted set), then every
 * output's values (`positions_0`, `positions_1`, `uncertainties_0`, …; the model's raw outputs: for the localization
 * head, normalised coordinates). The file is written afresh at each predict() and closed at its end.
 */
export class CsvPredictionWriter extends BasePredictionWriter {
  private fd: number | null = null;
  rows = 0;
  constructor(readonly path: string) {
    super('batch');
  }
  override onPredictStart(): void {
    mkdirSync(dirname(this.path), { recursive: true });
    this.fd = openSync(this.path, 'w');
    this.rows = 0;
  }
  override writeOnBatchEnd(_t: TrainerView, prediction: Prediction, batchIndices: number[]): void {
    const names = Object.keys(prediction).sort();
    const width = (n: string) => prediction[n]!.data.length / batchIndices.length;
    if (this.rows === 0) {
      const header = ['index', ...names.flatMap((n) => Array.from({ length: width(n) }, (_, j) => `${n}_${j}`))];
      writeSync(this.fd!, `${header.join(',')}\n`);
    }
    const lines = batchIndices.map((idx, i) => [idx, ...names.flatMap((n) => Array.from(prediction[n]!.data.subarray(i * width(n), (i + 1) * width(n))))].join(','));
    writeSync(this.fd!, `${lines.join('\n')}\n`);
    this.rows += batchIndices.length;
  }
  override onPredictEnd(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
