// EarlyStopping: ends fit when the monitored metric has not improved for `patience` validations.
import { Callback, type Metrics } from '../callback.js';
import type { Trainer } from '../trainer.js';

export interface EarlyStoppingOptions {
  monitor?: string;
  /** Validations without improvement before stopping (reference: 5). */
  patience?: number;
  /** The least change that counts as an improvement. */
  minDelta?: number;
  mode?: 'min' | 'max';
  /** Stop at once when the metric becomes NaN or infinite (default true). */
  checkFinite?: boolean;
}

export class EarlyStopping extends Callback {
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
    this.monitor = options.monitor ?? 'val/loss';
    this.patience = options.patience ?? 5;
    this.minDelta = Math.abs(options.minDelta ?? 0);
    this.mode = options.mode ?? 'min';
    this.checkFinite = options.checkFinite ?? true;
    this.best = this.mode === 'min' ? Infinity : -Infinity;
    if (!Number.isInteger(this.patience) || this.patience < 0) throw new Error('EarlyStopping: patience must be an integer ≥ 0');
  }

  override onValidationEpochEnd(trainer: Trainer, metrics: Metrics): void {
    const value = metrics[this.monitor];
    if (value === undefined) {
      throw new Error(`EarlyStopping: the monitored metric "${this.monitor}" is not among the validation metrics (${Object.keys(metrics).join(', ')})`);
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
  override loadStateDict(state: Record<string, unknown>): void {
    this.wait = Number(state.wait ?? 0);
    this.best = state.best === null || state.best === undefined ? this.best : Number(state.best);
    this.stoppedEpoch = (state.stoppedEpoch as number | null) ?? null;
  }

  private stop(trainer: Trainer, reason: string): void {
    trainer.shouldStop = true;
    this.stoppedEpoch = trainer.currentEpoch;
    this.reason = reason;
  }
}
