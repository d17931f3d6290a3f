// StochasticWeightAveraging: Lightning's callback (after Izmailov et al. 2018). From `swaEpochStart` the learning rate
// anneals (SWALR: cos or linear over `annealingEpochs` epochs, one change per epoch) from its value at that epoch to
// `swaLrs`, and at the end of every epoch from then on the weights join an equal-weight average. Validation sees
// the trained weights, as Lightning's; when fit ends the model's weights become the average and the localization
// head's BatchNorm statistics are recomputed for them (Lightning's extra forward pass).
import { z } from 'zod';
import { HeimdallError } from '../../errors.js';
import { parseOptions } from '../../config.js';
import { Callback } from '../callback.js';

export const swaOptionsSchema = z
  .object({
    /** The rate SWALR anneals to (Lightning's swa_lrs, required). */
    swaLrs: z.number().positive(),
    /** The first SWA epoch: an epoch index (an integer, from 0) or a fraction of maxEpochs in (0, 1) (Lightning's default 0.8). */
    swaEpochStart: z.number().min(0).default(0.8),
    /** Epochs over which the rate anneals to swaLrs (Lightning's default 10). */
    annealingEpochs: z.number().int().min(0).default(10),
    annealingStrategy: z.enum(['cos', 'linear']).default('cos'),
  })
  .strict();
export type StochasticWeightAveragingOptions = z.input<typeof swaOptionsSchema>;

export class StochasticWeightAveraging extends Callback {
  readonly swaLrs: number;
  readonly swaEpochStart: number;
  readonly annealingEpochs: number;
  readonly annealingStrategy: 'cos' | 'linear';
  /** The rate at the first SWA epoch, which the annealing starts from (checkpointed). */
  startLr: number | null = null;

  constructor(options: StochasticWeightAveragingOptions) {
    super();
    const o = parseOptions(swaOptionsSchema, options, 'StochasticWeightAveraging options');
    if (o.swaEpochStart > 1 && !Number.isInteger(o.swaEpochStart)) {
      throw new HeimdallError('HEIMDALL_INVALID_CONFIG', `StochasticWeightAveraging: swaEpochStart ${o.swaEpochStart} is neither an epoch index nor a fraction in (0, 1)`, { option: 'swaEpochStart' });
    }
    this.swaLrs = o.swaLrs;
    this.swaEpochStart = o.swaEpochStart;
    this.annealingEpochs = o.annealingEpochs;
    this.annealingStrategy = o.annealingStrategy;
  }

  /** The first SWA epoch (from 0) of a fit of `maxEpochs`: an integer as it is, a fraction × maxEpochs (Lightning's int()). */
  firstEpoch(maxEpochs: number): number {
    return Number.isInteger(this.swaEpochStart) ? this.swaEpochStart : Math.floor(this.swaEpochStart * maxEpochs);
  }

  /** SWALR's rate in SWA epoch k (0 at the first): from startLr to swaLrs over annealingEpochs. */
  lrAt(k: number): number {
    const start = this.startLr!;
    const t = this.annealingEpochs === 0 ? 1 : Math.min(1, Math.max(0, k / this.annealingEpochs));
    const alpha = this.annealingStrategy === 'cos' ? (1 - Math.cos(Math.PI * t)) / 2 : t;
    return this.swaLrs * alpha + start * (1 - alpha);
  }

  override stateDict(): Record<string, unknown> {
    return { startLr: this.startLr };
  }
  override loadStateDict(state: Record<string, unknown>): void {
    const v = state.startLr;
    if (v !== null && v !== undefined && !(typeof v === 'number' && v > 0 && Number.isFinite(v))) {
      throw new HeimdallError('HEIMDALL_BAD_FILE', `has startLr ${JSON.stringify(v)} (expected a positive rate or null)`);
    }
    this.startLr = typeof v === 'number' ? v : null;
  }
}
