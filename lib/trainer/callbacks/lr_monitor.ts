// LearningRateMonitor: logs the learning rate (`lr-AdamW` / `lr-SGD`, as Lightning names it).
import { Callback, type TrainBatch, type TrainerView } from '../callback.js';

export class LearningRateMonitor extends Callback {
  override get runsInFastDevRun(): boolean {
    return false;
  }
  override get rankZeroOnly(): boolean {
    return true;
  }
  readonly loggingInterval: 'epoch' | 'step';
  /** Every logged value, as [step, lr]. */
  readonly history: Array<[number, number]> = [];

  constructor(options: { loggingInterval?: 'epoch' | 'step' } = {}) {
    super();
    this.loggingInterval = options.loggingInterval ?? 'epoch';
  }

  private key(trainer: TrainerView): string {
    return trainer.config.optimizer.name === 'sgd' ? 'lr-SGD' : 'lr-AdamW';
  }

  override onTrainEpochStart(trainer: TrainerView): void {
    if (this.loggingInterval !== 'epoch' || trainer.lr === undefined) return;
    this.record(trainer, trainer.lr, trainer.globalStep);
  }

  override onTrainBatchEnd(trainer: TrainerView, batch: TrainBatch): void {
    if (this.loggingInterval === 'step') this.record(trainer, batch.lr, batch.step);
  }

  private record(trainer: TrainerView, lr: number, step: number): void {
    this.history.push([step, lr]);
    trainer.logMetrics({ [this.key(trainer)]: lr }, step);
  }
}
