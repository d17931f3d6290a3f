// What the Trainer trains on: a data module that yields native data sets for the splits, batched,
// shuffled and prefetched natively (no return to JavaScript per batch).
import { native, type NativeDataset, type PositionScale } from '../native.js';

export interface DataSplits {
  train: NativeDataset;
  val?: NativeDataset;
  test?: NativeDataset;
}

export interface DataModule {
  /** Samples per batch. */
  readonly batchSize: number;
  /** Builds (or returns the cached) splits. */
  setup(): DataSplits | Promise<DataSplits>;
  /** For localization data with normalised targets: how to map them back to degrees (metrics in metres). */
  readonly positionScale?: PositionScale;
  /** One sample's input shape [C, H, W], when fixed (recorded in exported ONNX models). */
  readonly inputShape?: readonly number[];
  /** Logged as parameters (`data/...`). */
  hyperparameters?(): Record<string, unknown>;
  /**
   * What a model trained on this data needs at inference (target normalisation, feature constants, receivers),
   * as JSON. The MLflowLogger logs it as the run's `data/metadata.json`, so that exporting the run later does
   * not need the data set.
   */
  metadataJson?(): string;
  /** A split's targets as typed arrays (floats [n, k], or class indices [n]), in the split's order, where known. */
  targets?(split: 'train' | 'val' | 'test'): { data: Float32Array | Int32Array; shape: number[] } | undefined;
  describe(): string;
}

export interface TensorDataOptions {
  /** Samples per batch (default 32). */
  batchSize?: number;
  /** Split as the reference service did (test 10 %, val 20 % of the rest), seeded. Default true. */
  split?: boolean;
  seed?: number;
  positionScale?: PositionScale;
}

/**
 * In-memory data from typed arrays: inputs [N, C, H, W] (Float32Array) and targets — [N, k] floats for
 * localization/regression, or [N] class indices (Int32Array) for classification. One copy into a tensor.
 */
export class TensorDataModule implements DataModule {
  readonly batchSize: number;
  private splits?: DataSplits;
  private indices?: { train: number[]; val?: number[]; test?: number[] };
  private readonly n: number;

  constructor(
    private readonly inputs: Float32Array,
    private readonly shape: [number, number, number, number],
    private readonly targetValues: Float32Array | Int32Array,
    private readonly targetShape: number[],
    private readonly options: TensorDataOptions = {},
  ) {
    this.batchSize = options.batchSize ?? 32;
    this.n = shape[0];
  }

  setup(): DataSplits {
    if (this.splits) return this.splits;
    const addon = native();
    const all = addon.tensorDataset(this.inputs, this.shape, this.targetValues, this.targetShape);
    if (this.options.split === false) {
      this.splits = { train: all };
      this.indices = { train: Array.from({ length: this.n }, (_, i) => i) };
    } else {
      const s = addon.referenceSplit(this.n, this.options.seed ?? 42);
      this.indices = s;
      this.splits = { train: addon.subset(all, s.train), val: addon.subset(all, s.val), test: addon.subset(all, s.test) };
    }
    return this.splits;
  }
  get inputShape(): number[] {
    return this.shape.slice(1);
  }
  targets(split: 'train' | 'val' | 'test'): { data: Float32Array | Int32Array; shape: number[] } | undefined {
    if (!this.indices) this.setup();
    const idx = this.indices?.[split];
    if (!idx) return undefined;
    const per = this.targetShape.slice(1).reduce((a, b) => a * b, 1);
    const out = this.targetValues instanceof Int32Array ? new Int32Array(idx.length * per) : new Float32Array(idx.length * per);
    idx.forEach((i, j) => out.set(this.targetValues.subarray(i * per, (i + 1) * per), j * per));
    return { data: out, shape: [idx.length, ...this.targetShape.slice(1)] };
  }
  get positionScale(): PositionScale | undefined {
    return this.options.positionScale;
  }
  hyperparameters(): Record<string, unknown> {
    return { source: 'tensors', samples: this.n, input_shape: this.shape.slice(1), batch_size: this.batchSize };
  }
  describe(): string {
    return `${this.n} in-memory samples of shape [${this.shape.slice(1).join(', ')}]`;
  }
}
