// GradientAccumulationScheduler: Lightning's schedule of the gradient accumulation factor by epoch,
// `{ 0: 8, 4: 4, 8: 1 }` (8 batches per optimizer step from epoch 0, 4 from epoch 4, 1 from epoch 8). The Trainer
// sets the engine's factor at the start of each epoch, and — unlike Lightning, whose scheduler length counts the
// initial factor for every epoch — sizes the learning-rate schedule to the optimizer steps this schedule makes.
import { z } from 'zod';
import { ConfigError, parseOptions } from '../../config.js';
import { Callback } from '../callback.js';

export const gradientAccumulationSchedulerOptionsSchema = z
  .object({
    /** Epoch (from 0) → batches per optimizer step from that epoch on. Without an entry for epoch 0, it starts at 1. */
    scheduling: z.record(z.string().regex(/^\d+$/, 'epochs are integers ≥ 0'), z.number().int().min(1)),
  })
  .strict();
export type GradientAccumulationSchedulerOptions = { scheduling: Record<number, number> };

export class GradientAccumulationScheduler extends Callback {
  /** [epoch, factor] by epoch, from epoch 0. */
  readonly scheduling: ReadonlyArray<readonly [number, number]>;

  constructor(options: GradientAccumulationSchedulerOptions) {
    super();
    const o = parseOptions(gradientAccumulationSchedulerOptionsSchema, options, 'GradientAccumulationScheduler options');
    const entries = Object.entries(o.scheduling).map(([e, f]) => [Number(e), f] as const).sort((a, b) => a[0] - b[0]);
    if (entries.length === 0) throw new ConfigError(['GradientAccumulationScheduler: scheduling is empty; give at least one epoch → factor']);
    this.scheduling = entries[0]![0] === 0 ? entries : [[0, 1] as const, ...entries];
  }

  /** Batches per optimizer step in this epoch. */
  factor(epoch: number): number {
    let f = 1;
    for (const [e, v] of this.scheduling) if (e <= epoch) f = v;
    return f;
  }

  /** Optimizer steps of epochs [0, epochs) with `batches` batches each. */
  steps(batches: number, epochs: number): number {
    let total = 0;
    for (let e = 0; e < epochs; e++) total += Math.ceil(batches / this.factor(e));
    return total;
  }
}
