// What the Trainer trains on: a data module that yields native data sets for the splits, batched,
// shuffled and prefetched natively (no return to JavaScript per batch).
import { datasetInputs, tensorIdentity, type SplitDescription } from '../data/datasets.js';
import { native, type NativeDataset, type PositionScale } from '../native.js';
import type { DatasetInput } from '../tracking/datasets.js';

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
  /**
   * The splits as MLflow dataset inputs (lib/data/datasets.ts): the MLflowLogger logs them at the start of fit,
   * as `mlflow.log_input` (datasets and their `mlflow.data.context`). Called after setup().
   */
  mlflowDatasets?(): DatasetInput[];
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
  mlflowDatasets(): DatasetInput[] {
    const s = this.setup();
    const seed = this.options.split === false ? 0 : this.options.seed ?? 42;
    const splits: SplitDescription[] = [{ split: 'train', size: s.train.size, seed }];
    if (s.val) splits.push({ split: 'val', size: s.val.size, seed });
    if (s.test) splits.push({ split: 'test', size: s.test.size, seed });
    const classes = this.targetValues instanceof Int32Array;
    return datasetInputs({
      name: 'tensors', sourceType: 'code', source: { tags: { 'heimdall.data.source': 'tensors' } },
      identity: tensorIdentity(this.inputs, this.shape, this.targetValues, this.targetShape),
      inputShape: this.shape.slice(1), targetShape: this.targetShape.slice(1), inputDtype: 'float32', targetDtype: classes ? 'int32' : 'float32',
      targetKind: classes ? 'class index' : this.options.positionScale ? 'position [lat, lon] (normalised)' : `regression (${this.targetShape.slice(1).reduce((a, b) => a * b, 1)} values)`,
    }, splits);
  }
  describe(): string {
    return `${this.n} in-memory samples of shape [${this.shape.slice(1).join(', ')}]`;
  }
}
