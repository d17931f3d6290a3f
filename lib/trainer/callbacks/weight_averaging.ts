// EMAWeightAveraging: Lightning's (2.5) exponential moving average of the weights. The native engine keeps the
// average next to the weights and updates it after optimizer steps; validation, test and predict see the average,
// checkpoints hold it as their weights (exports and loadWeights read it) with the trained weights beside it for
// resuming, and when fit ends the model's weights become the average.
import { z } from 'zod';
import { parseOptions } from '../../config.js';
import { Callback } from '../callback.js';

export const emaWeightAveragingOptionsSchema = z
  .object({
    /** average = decay·average + (1 − decay)·weights at each update (Lightning's default 0.999). */
    decay: z.number().gt(0).lt(1).default(0.999),
    /** Update after every N-th optimizer step. */
    updateEveryNSteps: z.number().int().min(1).default(1),
    /** The first optimizer step that updates the average (1: from the start); the first update copies the weights. */
    updateStartingAtStep: z.number().int().min(1).default(1),
  })
  .strict();
export type EMAWeightAveragingOptions = z.input<typeof emaWeightAveragingOptionsSchema>;

export class EMAWeightAveraging extends Callback {
  readonly decay: number;
  readonly updateEveryNSteps: number;
  readonly updateStartingAtStep: number;

  constructor(options: EMAWeightAveragingOptions = {}) {
    super();
    const o = parseOptions(emaWeightAveragingOptionsSchema, options, 'EMAWeightAveraging options');
    this.decay = o.decay;
    this.updateEveryNSteps = o.updateEveryNSteps;
    this.updateStartingAtStep = o.updateStartingAtStep;
  }

  /** What the Trainer gives the engine. */
  engineOptions(): { emaDecay: number; emaEvery: number; emaStart: number } {
    return { emaDecay: this.decay, emaEvery: this.updateEveryNSteps, emaStart: this.updateStartingAtStep };
  }
}
