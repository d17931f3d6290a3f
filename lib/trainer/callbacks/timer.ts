// Timer: Lightning's `Timer` callback (and what `Trainer({ maxTime })` adds). It measures the time spent in fit —
// training and validation, from onTrainStart — and, with a duration, ends fit when it has passed: checked after
// every training batch (`interval: 'step'`, at that batch boundary, with a resumable checkpoint) or after every
// epoch (`interval: 'epoch'`). The elapsed time is part of checkpoints, so a resumed fit counts it too.
import { z } from 'zod';
import { durationSchema, parseOptions } from '../../config.js';
import { Callback, type TrainerView } from '../callback.js';

export const timerOptionsSchema = z
  .object({
    /** How long fit may train: `'DD:HH:MM:SS'` or `{ days, hours, minutes, seconds }`; none: only measure. */
    duration: durationSchema.optional(),
    /** When to check: after every training batch (`'step'`, default) or every epoch. */
    interval: z.enum(['step', 'epoch']).default('step'),
    /** Say on stderr when the time is up. */
    verbose: z.boolean().default(true),
  })
  .strict();
export type TimerOptions = z.input<typeof timerOptionsSchema>;

export class Timer extends Callback {
  /** The limit in milliseconds, if any. */
  readonly durationMs: number | undefined;
  readonly interval: 'step' | 'epoch';
  private readonly verbose: boolean;
  /** Seconds spent in earlier fits of this training (restored from checkpoints). */
  private offsetS = 0;
  private startMs: number | null = null;
  private endMs: number | null = null;
  /** Set when this Timer ended fit. */
  expired = false;

  constructor(options: TimerOptions = {}) {
    super();
    const o = parseOptions(timerOptionsSchema, options, 'Timer options');
    this.durationMs = o.duration;
    this.interval = o.interval;
    this.verbose = o.verbose;
  }

  /** Seconds of training so far, across resumed fits. */
  timeElapsed(): number {
    if (this.startMs === null) return this.offsetS;
    return this.offsetS + ((this.endMs ?? Date.now()) - this.startMs) / 1000;
  }

  /** Seconds left before the limit (undefined without a duration). */
  timeRemaining(): number | undefined {
    return this.durationMs === undefined ? undefined : Math.max(0, this.durationMs / 1000 - this.timeElapsed());
  }

  override onTrainStart(): void {
    this.startMs = Date.now();
    this.endMs = null;
    this.expired = false;
  }

  override onTrainBatchEnd(trainer: TrainerView): void {
    if (this.interval === 'step') this.check(trainer);
  }

  override onTrainEpochEnd(trainer: TrainerView): void {
    if (this.interval === 'epoch') this.check(trainer);
  }

  override onTrainEnd(): void {
    this.endMs = Date.now();
  }

  override stateDict(): Record<string, unknown> {
    return { timeElapsed: { train: this.timeElapsed() } };
  }

  override loadStateDict(state: Record<string, unknown>): void {
    const elapsed = (state.timeElapsed as { train?: unknown } | undefined)?.train;
    this.offsetS = typeof elapsed === 'number' && Number.isFinite(elapsed) && elapsed >= 0 ? elapsed : 0;
    this.startMs = null;
  }

  private check(trainer: TrainerView): void {
    if (this.expired || this.durationMs === undefined || this.timeElapsed() * 1000 < this.durationMs) return;
    this.expired = true;
    if (this.verbose) process.stderr.write(`heimdall-torch: time limit of ${formatDuration(this.durationMs)} reached: ending fit\n`);
    if (this.interval === 'step') trainer.endFit('max_time');
    else trainer.shouldStop = true;
  }
}

/** `DD:HH:MM:SS` of a duration in milliseconds. */
export function formatDuration(ms: number): string {
  let s = Math.round(ms / 1000);
  const parts = [86400, 3600, 60, 1].map((unit) => {
    const n = Math.floor(s / unit);
    s -= n * unit;
    return String(n).padStart(2, '0');
  });
  return parts.join(':');
}
