// BackboneFinetuning: Lightning's schedule for fine-tuning a pretrained backbone — frozen for the first
// `unfreezeBackboneAtEpoch` epochs (the heads learn on fixed features), then unfrozen at a fraction of the learning
// rate that grows each epoch (× lambdaFunc(epoch + 1)) up to the heads' rate. The natural schedule for `--pretrained`.
// The Trainer applies it at the start of every epoch (and of a resumed fit), so a checkpoint needs no state of it.
import { z } from 'zod';
import { parseOptions } from '../../config.js';
import { Callback } from '../callback.js';

export const backboneFinetuningOptionsSchema = z
  .object({
    /** The first epoch (from 0) that trains the backbone (Lightning's default 10). */
    unfreezeBackboneAtEpoch: z.number().int().min(0).default(10),
    /** The backbone's rate when it is unfrozen, as a fraction of the schedule's (Lightning's default 0.1). */
    backboneInitialRatioLr: z.number().gt(0).default(0.1),
    /** The factor for the next epoch's backbone rate, given epoch + 1 (Lightning's default: 1.5 every epoch). */
    lambdaFunc: z.custom<(epoch: number) => number>((v) => typeof v === 'function', { message: 'a function of the epoch' }).optional(),
    /** Never above the heads' rate (Lightning's should_align). */
    shouldAlign: z.boolean().default(true),
    /** Say on stderr when the backbone is unfrozen and each rate change. */
    verbose: z.boolean().default(false),
  })
  .strict();
export type BackboneFinetuningOptions = z.input<typeof backboneFinetuningOptionsSchema>;

export class BackboneFinetuning extends Callback {
  readonly unfreezeBackboneAtEpoch: number;
  readonly backboneInitialRatioLr: number;
  readonly shouldAlign: boolean;
  private readonly lambdaFunc: (epoch: number) => number;
  private readonly verbose: boolean;

  constructor(options: BackboneFinetuningOptions = {}) {
    super();
    const o = parseOptions(backboneFinetuningOptionsSchema, options, 'BackboneFinetuning options');
    this.unfreezeBackboneAtEpoch = o.unfreezeBackboneAtEpoch;
    this.backboneInitialRatioLr = o.backboneInitialRatioLr;
    this.shouldAlign = o.shouldAlign;
    this.lambdaFunc = o.lambdaFunc ?? (() => 1.5);
    this.verbose = o.verbose;
  }

  /** The backbone's rate in `epoch` as a fraction of the schedule's, or null while it is frozen. */
  scaleAt(epoch: number): number | null {
    if (epoch < this.unfreezeBackboneAtEpoch) return null;
    let scale = this.backboneInitialRatioLr;
    for (let e = this.unfreezeBackboneAtEpoch + 1; e <= epoch; e++) {
      const f = this.lambdaFunc(e + 1);
      if (!Number.isFinite(f) || f <= 0) throw new Error(`BackboneFinetuning: lambdaFunc(${e + 1}) = ${f}; it must be a positive number`);
      scale *= f;
      if (this.shouldAlign && scale > 1) scale = 1;
    }
    return this.shouldAlign ? Math.min(scale, 1) : scale;
  }

  /** What the Trainer tells the engine at the start of `epoch`; a line for the verbose log when it changes. */
  stateAt(epoch: number): { trainable: boolean; lrScale: number; note: string | null } {
    const scale = this.scaleAt(epoch);
    const before = epoch > 0 ? this.scaleAt(epoch - 1) : null;
    const note = !this.verbose || scale === before ? null
      : scale === null ? `BackboneFinetuning: backbone frozen until epoch ${this.unfreezeBackboneAtEpoch}`
        : `BackboneFinetuning: epoch ${epoch}: backbone learning rate ${scale} × the schedule's${before === null ? ' (unfrozen)' : ''}`;
    return { trainable: scale !== null, lrScale: scale ?? 1, note };
  }
}
