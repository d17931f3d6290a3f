// The learning-rate range test (Lightning's `Tuner.lr_find`, after Smith 2015): train for a few steps while the
// learning rate grows exponentially from minLr to maxLr, record the smoothed loss, stop when it diverges, restore
// the weights, and suggest the rate where the loss fell fastest. Nothing is logged to the run being tuned.
import { z } from 'zod';
import { parseOptions } from '../config.js';

export const lrFindOptionsSchema = z
  .object({
    minLr: z.number().positive().default(1e-8),
    maxLr: z.number().positive().default(1),
    /** Optimizer steps of the sweep. */
    numTraining: z.number().int().min(3).default(100),
    /**
     * Stop when the smoothed loss exceeds the best by this factor (Lightning's `early_stop_threshold`; null: never).
     * For losses that go negative (the localization head's Gaussian NLL) "exceeds by the factor" means
     * `loss > best + (factor − 1)·|best|`, which is Lightning's rule for positive losses.
     */
    earlyStopThreshold: z.number().gt(1).nullable().default(4),
    /** Exponential smoothing of the recorded loss (Lightning: 0.98). */
    beta: z.number().min(0).lt(1).default(0.98),
    /** Points left out of the suggestion at the start and the end (Lightning's skip_begin / skip_end). */
    skipBegin: z.number().int().min(0).default(10),
    skipEnd: z.number().int().min(0).default(1),
    /**
     * How the rate is picked from the curve:
     * - `'valley'` (default; fastai's default since 2.4): the middle of the longest stretch where the smoothed loss keeps
     *   falling — at the start of its second third, plus half a third;
     * - `'steepest'`: the steepest fall of the smoothed loss over log(rate) (Lightning 1.x, fastai's `steep`);
     * - `'lightning'`: Lightning 2.x's `torch.gradient(losses, spacing=[lrs])` — the gradient over the rate itself.
     * Both steepest rules take one step's noise as a slope (and `'lightning'` divides it by that step's tiny rate): on
     * the Heimdall data they suggested 1e-7 to 2e-5, where nothing trains; `'valley'` suggested 1.1e-3 (the main
     * job's hand-picked rate is 1e-3). skipBegin / skipEnd apply to the steepest rules.
     */
    method: z.enum(['valley', 'steepest', 'lightning']).default('valley'),
  })
  .strict()
  .refine((o) => o.maxLr > o.minLr, { message: 'maxLr must be larger than minLr', path: ['maxLr'] });
export type LrFindOptions = z.input<typeof lrFindOptionsSchema>;
export type LrFindConfig = z.output<typeof lrFindOptionsSchema>;
export const parseLrFindOptions = (o: unknown): LrFindConfig => parseOptions(lrFindOptionsSchema, o, 'lrFind options');

export interface LrFindResult {
  /** The learning rate of each step of the sweep. */
  lrs: number[];
  /** The smoothed training loss after each step. */
  losses: number[];
  /** The rate at the steepest descent of the loss curve (undefined when fewer than two usable points). */
  suggestion: number | undefined;
  /** Index of the suggestion in `lrs`. */
  suggestionIndex: number | undefined;
  /** True when the sweep ended early because the loss diverged. */
  diverged: boolean;
}

/** Records the sweep: smoothing and the divergence rule. */
export class LrSweep {
  readonly lrs: number[] = [];
  readonly losses: number[] = [];
  private avg = 0;
  private best = Infinity;
  diverged = false;
  constructor(private readonly o: LrFindConfig) {}

  /** Adds one step; returns true when the sweep should stop (the loss diverged). */
  add(lr: number, loss: number): boolean {
    const i = this.lrs.length;
    this.avg = this.o.beta * this.avg + (1 - this.o.beta) * loss;
    const smoothed = this.avg / (1 - this.o.beta ** (i + 1));
    this.lrs.push(lr);
    this.losses.push(smoothed);
    if (!Number.isFinite(smoothed)) {
      this.diverged = true;
      return true;
    }
    const t = this.o.earlyStopThreshold;
    if (t !== null && i > 0 && smoothed > this.best + (t - 1) * Math.abs(this.best)) {
      this.diverged = true;
      return true;
    }
    if (smoothed < this.best) this.best = smoothed;
    return false;
  }

  result(): LrFindResult {
    const idx = this.o.method === 'valley' ? valleyIndex(this.losses)
      : suggestIndex(this.o.method === 'steepest' ? this.lrs.map(Math.log) : this.lrs, this.losses, this.o.skipBegin, this.o.skipEnd);
    return { lrs: [...this.lrs], losses: [...this.losses], suggestion: idx === undefined ? undefined : this.lrs[idx], suggestionIndex: idx, diverged: this.diverged };
  }
}

/**
 * Lightning's suggestion: of the points between skipBegin and the last skipEnd, the finite ones; the gradient of
 * the loss with respect to `lrs` (second-order differences on the uneven grid, one-sided at the ends, as
 * `torch.gradient(losses, spacing=[lrs])`); the index of its minimum. Give log(rates) for the gradient over log(rate).
 */
export function suggestIndex(lrs: readonly number[], losses: readonly number[], skipBegin = 10, skipEnd = 1): number | undefined {
  const idx: number[] = [];
  for (let i = skipBegin; i < losses.length - skipEnd; i++) if (Number.isFinite(losses[i])) idx.push(i);
  if (idx.length < 2) return undefined;
  const x = idx.map((i) => lrs[i]!), f = idx.map((i) => losses[i]!);
  const n = idx.length;
  const g = new Array<number>(n);
  g[0] = (f[1]! - f[0]!) / (x[1]! - x[0]!);
  g[n - 1] = (f[n - 1]! - f[n - 2]!) / (x[n - 1]! - x[n - 2]!);
  for (let i = 1; i < n - 1; i++) {
    const hl = x[i]! - x[i - 1]!, hr = x[i + 1]! - x[i]!;
    g[i] = (hl * hl * f[i + 1]! - hr * hr * f[i - 1]! + (hr * hr - hl * hl) * f[i]!) / (hl * hr * (hl + hr));
  }
  let best = 0;
  for (let i = 1; i < n; i++) if (g[i]! < g[best]!) best = i;
  return idx[best];
}

/**
 * fastai's `valley`: the longest decreasing subsequence of the (smoothed) losses, from its start `s` to its end `e`;
 * the point `s + ⌊(e − s)/3⌋ + ⌊(e − s)/6⌋`. Non-finite losses never extend a stretch. undefined for fewer than 2 points.
 */
export function valleyIndex(losses: readonly number[]): number | undefined {
  const n = losses.length;
  if (n < 2) return undefined;
  const lds = new Array<number>(n).fill(1);
  let maxStart = 0, maxEnd = 0;
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) {
      if (losses[i]! < losses[j]! && lds[i]! < lds[j]! + 1) lds[i] = lds[j]! + 1;
      // inside the inner loop, as fastai has it (the start is taken when the stretch first becomes the longest)
      if (lds[maxEnd]! < lds[i]!) {
        maxEnd = i;
        maxStart = maxEnd - lds[maxEnd]!;
      }
    }
  }
  const sections = (maxEnd - maxStart) / 3;
  return maxStart + Math.trunc(sections) + Math.trunc(sections / 2);
}
