// ThroughputMonitor: Lightning's callback of the same name. Over a window of the last training batches it logs the
// samples and batches per second (wall clock, data loading included, validation excluded), the FLOPs per second
// (lib/trainer/flops.ts: counted as FlopCounterMode counts them), and on CUDA devices of known peak the model FLOPs
// utilisation (MFU). `throughput/device/*` is this process; `throughput/*` all ranks (× world size, as Lightning).
import { z } from 'zod';
import { parseOptions } from '../../config.js';
import { torchInfo } from '../../native.js';
import { Callback, type Metrics, type TrainBatch, type TrainerView } from '../callback.js';
import { flopsPerSample } from '../flops.js';

export const throughputMonitorOptionsSchema = z
  .object({
    /** Batches the rates are measured over (Lightning's window_size, default 100). */
    windowSize: z.number().int().min(2).default(100),
    /** Log every N optimizer steps; default: the Trainer's logEveryNSteps. */
    logEveryNSteps: z.number().int().min(1).optional(),
  })
  .strict();
export type ThroughputMonitorOptions = z.input<typeof throughputMonitorOptionsSchema>;

/**
 * Dense peak FLOP/s of CUDA devices by name (NVIDIA's data sheets, without sparsity): bf16/fp16 tensor cores, and fp32
 * without TF32 (libtorch's default for matmuls). A device not listed gets no MFU.
 */
const PEAKS: Array<{ match: RegExp; bf16: number; fp32: number }> = [
  { match: /H200|H100.*(SXM|HBM3)|GH200/i, bf16: 989.4e12, fp32: 66.9e12 },
  { match: /H100.*(PCIe|NVL)|H100/i, bf16: 756.5e12, fp32: 51.2e12 },
  { match: /A100/i, bf16: 312e12, fp32: 19.5e12 },
  { match: /L40S/i, bf16: 362.05e12, fp32: 91.6e12 },
  { match: /L4\b/i, bf16: 121e12, fp32: 30.3e12 },
  { match: /A10G?\b/i, bf16: 125e12, fp32: 31.2e12 },
  { match: /RTX 4090/i, bf16: 165.2e12, fp32: 82.6e12 },
  { match: /V100/i, bf16: 125e12, fp32: 15.7e12 },
];

/** The peak FLOP/s of a CUDA device for a precision, or null when unknown. */
export function peakFlops(deviceName: string, precision: string): number | null {
  const p = PEAKS.find((x) => x.match.test(deviceName));
  if (!p) return null;
  return precision === '32' ? p.fp32 : p.bf16;
}

export class ThroughputMonitor extends Callback {
  override get runsInFastDevRun(): boolean {
    return false;
  }
  override get rankZeroOnly(): boolean {
    return true;
  }
  readonly windowSize: number;
  private readonly every?: number;
  private window: { time: number; samples: number }[] = [];
  private flops: number | null = null;
  private peak: number | null = null;
  /** The last values logged. */
  last: Metrics = {};

  constructor(options: ThroughputMonitorOptions = {}) {
    super();
    const o = parseOptions(throughputMonitorOptionsSchema, options, 'ThroughputMonitor options');
    this.windowSize = o.windowSize;
    this.every = o.logEveryNSteps;
  }

  /** FLOPs per training sample (forward and backward) of the fitted model on its data, when known. */
  get flopsPerSample(): number | null {
    return this.flops;
  }

  override onFitStart(trainer: TrainerView): void {
    const shape = trainer.datamodule?.inputShape;
    this.flops = trainer.model && shape ? flopsPerSample(trainer.model, shape).training : null;
    const device = trainer.config.device;
    this.peak = null;
    if (device.startsWith('cuda')) {
      const index = Number(/^cuda:(\d+)$/.exec(device)?.[1] ?? 0);
      const d = torchInfo().cudaDevices.find((x) => typeof x === 'object' && x.index === index);
      if (d && typeof d === 'object') this.peak = peakFlops(d.name, trainer.config.precision);
    }
  }

  // The window never spans a validation or the gap between epochs.
  override onTrainEpochStart(): void {
    this.window = [];
  }
  override onValidationEnd(): void {
    this.window = [];
  }

  override onTrainBatchEnd(trainer: TrainerView, batch: TrainBatch): void {
    this.window.push({ time: batch.time, samples: batch.batchSize });
    if (this.window.length > this.windowSize) this.window.shift();
    const every = this.every ?? trainer.config.logEveryNSteps;
    if (this.window.length < 2 || batch.step % every !== 0) return;
    const first = this.window[0]!;
    const seconds = batch.time - first.time;
    if (!(seconds > 0)) return;
    // the first batch's samples were done when the window's clock starts
    const samples = this.window.slice(1).reduce((a, b) => a + b.samples, 0);
    const world = trainer.worldSize;
    const m: Metrics = {
      'throughput/device/batches_per_sec': (this.window.length - 1) / seconds,
      'throughput/device/samples_per_sec': samples / seconds,
    };
    if (this.flops !== null) m['throughput/device/flops_per_sec'] = (samples / seconds) * this.flops;
    if (this.peak !== null && this.flops !== null) m['throughput/device/mfu'] = m['throughput/device/flops_per_sec']! / this.peak;
    m['throughput/batches_per_sec'] = m['throughput/device/batches_per_sec']! * world;
    m['throughput/samples_per_sec'] = m['throughput/device/samples_per_sec']! * world;
    if (m['throughput/device/flops_per_sec'] !== undefined) m['throughput/flops_per_sec'] = m['throughput/device/flops_per_sec'] * world;
    this.last = m;
    trainer.logMetrics(m, batch.step);
  }
}
