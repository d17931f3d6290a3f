// The Heimdall RF localisation data (native/data/heimdall through native/napi/data_binding.cc): the
// synthetic data set (the embedded default), the on-disk `<id>_iq.npy` + `<id>_label.npy` directory, the
// reference split, and the metadata metrics and ONNX export need (target normalisation, feature constants,
// receivers). Every data set is a NativeDataset: the engine batches, shuffles and prefetches it natively.
import { z } from 'zod';
import { HeimdallError } from '../errors.js';
import { dataBinding as addon, native, type HeimdallDataInfo, type NativeDataset, type PositionScale } from '../native.js';
import { resolve } from 'node:path';
import type { DataModule } from '../trainer/data.js';
import { datasetInputs, directoryDatasetName, directoryIdentity, type DatasetDescription } from './datasets.js';
import { pythonJson, type DatasetInput } from '../tracking/datasets.js';

const range = z.tuple([z.number().min(0), z.number().min(0)]).refine(([lo, hi]) => lo <= hi, 'min must not exceed max');

export const augmentOptionsSchema = z.object({
  noiseProbability: z.number().min(0).max(1).default(0.3),
  /** In normalised feature units (1 unit = 20 dB). */
  noiseStd: z.number().min(0).default(0.05),
  shiftProbability: z.number().min(0).max(1).default(0.3),
  maxShift: z.number().int().min(0).default(2),
});

/** What the Trainer needs beyond the samples: batch size and the split's seed. */
const moduleOptions = {
  /** Samples per batch (default 32). */
  batchSize: z.number().int().min(1).default(32),
  /** Seed of the reference split's shuffle (synthetic: default `seed`; directory: default 42). */
  splitSeed: z.number().int().min(0).optional(),
  /** setup() computes every sample's features first, on all cores (default true; only when caching). */
  materialize: z.boolean().default(true),
};

export const syntheticOptionsSchema = z.object({
  ...moduleOptions,
  samples: z.number().int().min(3).default(2000),
  seed: z.number().int().min(0).default(0),
  /** 'default' (shadowing σ 0.5–1 dB, clutter 9–11 dB: learnable) or 'reference' (3–6 dB, 5–15 dB, as the reference simulator). */
  preset: z.enum(['default', 'reference']).default('default'),
  marginDeg: z.number().min(0).optional(),
  insideFraction: z.number().min(0).max(1).optional(),
  noiseFloorDbm: z.number().optional(),
  minSnrDb: z.number().optional(),
  minReceivers: z.number().int().min(0).max(7).optional(),
  txPowerDbm: z.number().optional(),
  wideFmProbability: z.number().min(0).max(1).optional(),
  shadowingDb: range.optional(),
  clutterDb: range.optional(),
  /** Keep generated features in memory (filled on first use, or all at once with materialize()). */
  cache: z.boolean().default(true),
  augment: augmentOptionsSchema.prefault({}),
});
export type SyntheticOptions = z.input<typeof syntheticOptionsSchema>;

export const directoryOptionsSchema = z.object({
  ...moduleOptions,
  cache: z.boolean().default(true),
  augment: augmentOptionsSchema.prefault({}),
});
export type DirectoryOptions = z.input<typeof directoryOptionsSchema>;

export type { FeatureConfig, HeimdallDataInfo, Receiver } from '../native.js';

export interface Splits {
  train: NativeDataset;
  val: NativeDataset;
  test: NativeDataset;
}

function parse<T extends z.ZodTypeAny>(schema: T, value: unknown, what: string): z.output<T> {
  const r = schema.safeParse(value ?? {});
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new HeimdallError('HEIMDALL_INVALID_ARGUMENT', `invalid ${what}: ${issues}`);
  }
  return r.data;
}

/**
 * A Heimdall data set with its split and metadata — the Trainer's data module as it is:
 * `trainer.fit(ConvNeXt.localization('convnext_atto', { inChans: 7 }), HeimdallDataModule.synthetic())`.
 * setup() gives the reference split (seeded); the engine augments the train split only.
 */
export class HeimdallDataModule implements DataModule {
  readonly info: HeimdallDataInfo;
  /** Samples per batch. */
  readonly batchSize: number;
  /** Seed of the reference split setup() returns. */
  readonly splitSeed: number;
  private splits?: Splits;
  private readonly materializeOnSetup: boolean;

  private constructor(
    readonly dataset: NativeDataset,
    options: { batchSize: number; splitSeed: number; materialize: boolean },
    private readonly params: Record<string, unknown>,
    /** What the data is, for its MLflow dataset inputs (datasets.ts): name, source and identity (digest). */
    private readonly origin: Pick<DatasetDescription, 'name' | 'sourceType' | 'source'> & { identity: () => unknown },
  ) {
    const info = addon().heimdallInfo(dataset);
    if (!info) throw new HeimdallError('HEIMDALL_INVALID_ARGUMENT', 'heimdall-torch: not a Heimdall data set: ' + dataset.describe());
    this.info = info;
    this.batchSize = options.batchSize;
    this.splitSeed = options.splitSeed;
    this.materializeOnSetup = options.materialize;
  }

  /** The synthetic RF data set (the embedded default): 7 receivers × 128 mel bands × 32 frames per sample. */
  static synthetic(options: SyntheticOptions = {}): HeimdallDataModule {
    const { batchSize, splitSeed, materialize, ...o } = parse(syntheticOptionsSchema, options, 'synthetic data options');
    const params = { source: 'synthetic', seed: o.seed, preset: o.preset };
    // The generator's options make the data (cache and augmentation do not): they are its identity.
    const { cache: _cache, augment: _augment, ...generator } = o;
    const origin = {
      name: 'heimdall-synthetic', sourceType: 'code',
      source: { tags: { 'heimdall.data.source': 'synthetic', 'heimdall.data.options': pythonJson(generator) } },
      identity: () => ({ generator: 'heimdall-synthetic', ...generator }),
    };
    return new HeimdallDataModule(addon().heimdallSynthetic(o), { batchSize, splitSeed: splitSeed ?? o.seed, materialize }, params, origin);
  }

  /** A directory of `<id>_iq.npy` + `<id>_label.npy` (+ optional manifest.json). Every file's header is checked. */
  static async fromDirectory(dir: string, options: DirectoryOptions = {}): Promise<HeimdallDataModule> {
    const { batchSize, splitSeed, materialize, ...o } = parse(directoryOptionsSchema, options, 'data directory options');
    const origin = { name: directoryDatasetName(dir), sourceType: 'local', source: { uri: resolve(dir) }, identity: () => directoryIdentity(dir) };
    return new HeimdallDataModule(await addon().heimdallDirectory(dir, o), { batchSize, splitSeed: splitSeed ?? 42, materialize }, { source: 'directory', dir }, origin);
  }

  /** Writes `samples` synthetic samples in the on-disk format. */
  static async writeSynthetic(dir: string, samples: number, options: Omit<SyntheticOptions, 'samples' | 'cache' | keyof typeof moduleOptions> = {}): Promise<number> {
    const o = parse(syntheticOptionsSchema.omit({ samples: true, cache: true, batchSize: true, splitSeed: true, materialize: true }), options, 'synthetic data options');
    return (await addon().writeSynthetic(dir, samples, o)).written;
  }

  /**
   * DataModule: the reference split with `splitSeed` (built once; the same data sets on every call). Unless
   * `materialize: false`, every sample's features are computed first on all cores (see materialize()).
   */
  async setup(): Promise<Splits> {
    if (this.splits) return this.splits;
    if (this.materializeOnSetup) await this.materialize();
    this.splits ??= this.split(this.splitSeed);
    return this.splits;
  }

  /** DataModule: logged as `data/...` parameters. */
  hyperparameters(): Record<string, unknown> {
    return { ...this.params, samples: this.size, input_shape: this.inputShape, batch_size: this.batchSize, split_seed: this.splitSeed };
  }

  /** DataModule: the target normalisation, feature constants and receivers (logged as `data/metadata.json`). */
  metadataJson(): string {
    return this.info.metadataJson;
  }

  /** DataModule: the splits as MLflow dataset inputs (datasets.ts), digests from the options or the files. */
  mlflowDatasets(): DatasetInput[] {
    const s = this.splits ?? this.split(this.splitSeed);
    const seed = this.splitSeed;
    return datasetInputs({
      name: this.origin.name, sourceType: this.origin.sourceType, source: this.origin.source, identity: this.origin.identity(),
      inputShape: this.inputShape, targetShape: this.dataset.targetShape, inputDtype: 'float32', targetDtype: 'float32',
      targetKind: 'position [lat, lon] (normalised)',
    }, [{ split: 'train', size: s.train.size, seed }, { split: 'val', size: s.val.size, seed }, { split: 'test', size: s.test.size, seed }]);
  }

  describe(): string {
    return this.dataset.describe();
  }

  get size(): number {
    return this.dataset.size;
  }
  get inputShape(): number[] {
    return this.dataset.inputShape;
  }
  get positionScale(): PositionScale {
    return this.info.positionScale;
  }

  /** The reference service's split after a seeded shuffle: test = max(1, ⌊0.1·N⌋), val = max(1, ⌊0.2·(N − test)⌋). */
  split(seed = 0): Splits {
    const a = native();
    const s = a.referenceSplit(this.dataset.size, seed);
    return { train: a.subset(this.dataset, s.train), val: a.subset(this.dataset, s.val), test: a.subset(this.dataset, s.test) };
  }

  /** Computes every sample's features now (on worker threads) instead of on first use. */
  async materialize(): Promise<void> {
    await addon().heimdallMaterialize(this.dataset);
  }

  /** The (lat, lon) positions in degrees of a data set's samples (this one, or a split of it), as [n·2]. */
  positions(data: NativeDataset = this.dataset): Float64Array {
    return addon().heimdallPositions(data);
  }

  /**
   * The baseline the main job is measured against: always predicting the training split's centroid.
   * Returns its position errors on `test` in metres (mean, median, p68, p95).
   */
  centroidBaseline(train: NativeDataset, test: NativeDataset): ErrorSummary {
    return summarizeErrors(this.centroidErrors(train, test));
  }

  /** The centroid baseline's position error in metres for each sample of `test`, in its order. */
  centroidErrors(train: NativeDataset, test: NativeDataset): number[] {
    const t = this.positions(train);
    let lat = 0;
    let lon = 0;
    for (let i = 0; i < t.length; i += 2) {
      lat += t[i];
      lon += t[i + 1];
    }
    lat /= t.length / 2;
    lon /= t.length / 2;
    const p = this.positions(test);
    const errors: number[] = [];
    for (let i = 0; i < p.length; i += 2) errors.push(haversineM(lat, lon, p[i], p[i + 1]));
    return errors;
  }

  /** Converts normalised [lat, lon] pairs (model outputs / targets) to degrees. */
  toDegrees(normalized: ArrayLike<number>): Float64Array {
    const s = this.info.positionScale;
    const out = new Float64Array(normalized.length);
    for (let i = 0; i + 1 < normalized.length; i += 2) {
      out[i] = s.latCenter + normalized[i] * s.latScale;
      out[i + 1] = s.lonCenter + normalized[i + 1] * s.lonScale;
    }
    return out;
  }
}

/**
 * Mel features of IQ, exactly as the data sets compute them. `iq` holds interleaved (re, im) float32 pairs
 * of `shape` = [..., samples] (or, with `complex: false`, the magnitude itself); returns [..., 128, 32].
 */
export function computeFeatures(iq: Float32Array, shape: number[], sampleRate: number, options: { complex?: boolean } = {}): { data: Float32Array; shape: number[] } {
  return addon().computeFeatures(iq, shape, sampleRate, options);
}

export const EARTH_RADIUS_M = 6371008.8;

/** Great-circle distance in metres (the same formula as the native metrics). */
export function haversineM(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const r = Math.PI / 180;
  const h = Math.sin(((lat2 - lat1) * r) / 2) ** 2 + Math.cos(lat1 * r) * Math.cos(lat2 * r) * Math.sin(((lon2 - lon1) * r) / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

export interface ErrorSummary {
  count: number;
  mean: number;
  median: number;
  p68: number;
  p95: number;
}

/** Mean and percentiles (linear interpolation between order statistics, numpy's default). */
export function summarizeErrors(errors: ArrayLike<number>): ErrorSummary {
  const s = Array.from(errors).sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return { count: 0, mean: NaN, median: NaN, p68: NaN, p95: NaN };
  const q = (p: number) => {
    const pos = (p / 100) * (n - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(n - 1, lo + 1);
    return s[lo] + (s[hi] - s[lo]) * (pos - lo);
  };
  return { count: n, mean: s.reduce((a, b) => a + b, 0) / n, median: q(50), p68: q(68), p95: q(95) };
}
