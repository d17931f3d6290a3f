// A progress bar (cli-progress) for interactive terminals; the Trainer leaves it out when stdout is not a
// TTY or CI is set.
import cliProgress from 'cli-progress';
import { Callback, type Metrics, type TrainBatch, type TrainerView } from '../callback.js';

export class ProgressBar extends Callback {
  override get rankZeroOnly(): boolean {
    return true;
  }
  private bar?: cliProgress.SingleBar;

  override onTrainEpochStart(trainer: TrainerView, epoch: number): void {
    const total = Math.max(1, trainer.trainBatches);
    this.bar = new cliProgress.SingleBar(
      { format: `epoch ${epoch + 1}/${trainer.config.maxEpochs} {bar} {value}/{total} | loss {loss} | {rate} samples/s`, hideCursor: true, clearOnComplete: false },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(total, 0, { loss: '-', rate: '-' });
  }

  override onTrainBatchEnd(_trainer: TrainerView, batch: TrainBatch): void {
    this.bar?.update(batch.batch + 1, { loss: (batch.metrics['train/loss'] ?? NaN).toFixed(4), rate: Math.round(batch.samplesPerSec) });
  }

  override onTrainEpochEnd(_trainer: TrainerView, metrics: Metrics): void {
    this.bar?.stop();
    this.bar = undefined;
    const val = metrics['val/loss'];
    if (val !== undefined) process.stdout.write(`  val/loss ${val.toFixed(4)}\n`);
  }

  override onException(): void {
    this.bar?.stop();
  }
  override onInterrupt(): void {
    this.bar?.stop();
  }
}
