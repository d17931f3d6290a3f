// EarlyStopping: ends fit when the monitored metric has not improved for `patience` validations.
import type { z } from 'zod';
import { earlyStoppingOptionsSchema, parseOptions } from '../../config.js';
import { HeimdallError } from '../../errors.js';
import { Callback, type Metrics, type TrainerView } from '../callback.js';

/** Options (lib/config.ts' earlyStoppingOptionsSchema): monitor (val/loss), patience (5), minDelta (0), mode (min), checkFinite (true). */
export type EarlyStoppingOptions = z.input<typeof earlyStoppingOptionsSchema>;

export class EarlyStopping extends Callback {
  override get runsInFastDevRun(): boolean {
    return false;
  }
  readonly monitor: string;
  readonly patience: number;
  readonly minDelta: number;
  readonly mode: 'min' | 'max';
  readonly checkFinite: boolean;
  wait = 0;
  best: number;
  stoppedEpoch: number | null = null;
  reason: string | null = null;

  constructor(options: EarlyStoppingOptions = {}) {
    super();
    const o = parseOptions(earlyStoppingOptionsSchema, options, 'EarlyStopping options');
    this.monitor = o.monitor;
    this.patience = o.patience;
    this.minDelta = o.minDelta;
    this.mode = o.mode;
    this.checkFinite = o.checkFinite;
    this.best = this.mode === 'min' ? Infinity : -Infinity;
  }

  /** `EarlyStopping{"monitor":"val/loss","mode":"min"}`, as Lightning keys it. */
  override get stateKey(): string {
    return this.stateKeyOf({ monitor: this.monitor, mode: this.mode });
  }

  override onValidationEpochEnd(trainer: TrainerView, metrics: Metrics): void {
    const value = metrics[this.monitor];
    if (value === undefined) {
      throw new HeimdallError('HEIMDALL_INVALID_CONFIG', `EarlyStopping: the monitored metric "${this.monitor}" is not among the validation metrics (${Object.keys(metrics).join(', ')})`);
    }
    if (!Number.isFinite(value)) {
      if (this.checkFinite) this.stop(trainer, `${this.monitor} = ${value} is not finite`);
      return;
    }
    const improved = this.mode === 'min' ? value < this.best - this.minDelta : value > this.best + this.minDelta;
    if (improved) {
      this.best = value;
      this.wait = 0;
      return;
    }
    this.wait += 1;
    if (this.wait >= this.patience) this.stop(trainer, `${this.monitor} did not improve for ${this.wait} validations (best ${this.best})`);
  }

  override stateDict(): Record<string, unknown> {
    return { wait: this.wait, best: this.best, stoppedEpoch: this.stoppedEpoch, patience: this.patience };
  }
  /** Restores wait, best and stoppedEpoch; a field of the wrong kind is refused (HEIMDALL_BAD_FILE), nothing is changed. */
  override loadStateDict(state: Record<string, unknown>): void {
    const count = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
    const { wait = 0, best = null, stoppedEpoch = null } = state;
    const wrong = !count(wait) ? `wait ${JSON.stringify(wait)} (expected a count)`
      : best !== null && (typeof best !== 'number' || !Number.isFinite(best)) ? `best ${JSON.stringify(best)} (expected a finite number or null)`
        : stoppedEpoch !== null && !count(stoppedEpoch) ? `stoppedEpoch ${JSON.stringify(stoppedEpoch)} (expected an epoch or null)` : null;
    if (wrong) throw new HeimdallError('HEIMDALL_BAD_FILE', `has ${wrong}`);
    this.wait = wait as number;
    if (best !== null) this.best = best as number;
    this.stoppedEpoch = stoppedEpoch as number | null;
  }

  private stop(trainer: TrainerView, reason: string): void {
    trainer.shouldStop = true;
    this.stoppedEpoch = trainer.currentEpoch;
    this.reason = reason;
  }
}
