// The single place that loads the native addon and declares its types. Everything else in lib/ goes
// through the small typed functions and classes exported here.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixCommand, loadLibtorch, loadedLibtorch, readBuildRecord } from './loader/libtorch.js';

/** Error codes the native side attaches to `error.code`. */
export type NativeErrorCode =
  | 'HEIMDALL_INVALID_ARGUMENT'
  | 'HEIMDALL_SHAPE_MISMATCH'
  | 'HEIMDALL_UNKNOWN_VARIANT'
  | 'HEIMDALL_BAD_FILE'
  | 'HEIMDALL_NON_FINITE_LOSS'
  | 'HEIMDALL_DEVICE_UNAVAILABLE'
  | 'HEIMDALL_WEIGHTS_MISMATCH'
  | 'HEIMDALL_INVALID_STATE'
  | 'HEIMDALL_OUT_OF_MEMORY'
  | 'HEIMDALL_TORCH_ERROR'
  | 'HEIMDALL_INTERNAL';

export interface TorchInfo {
  libtorch: string;
  heimdallTorch: string;
  cudaBuild: boolean;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  cudaDevices: Array<'cpu' | { index: number; name: string }>;
  cudaRuntime: number | null;
  cudnn: number | null;
  threads: number;
  interopThreads: number;
  parallelInfo: string;
}

export type HeadKind = 'localization' | 'classification' | 'regression';

export interface NativeModelOptions {
  variant?: string;
  inChans?: number;
  dropPathRate?: number;
  layerScaleInit?: number;
  head?: HeadKind;
  outputs?: number;
  sigmaMin?: number;
  sigmaMax?: number;
  /** Localization MLPs' dropout: one rate for each hidden layer, or one per layer (default [0.3, 0.2], the reference's). */
  headDropout?: number | [number, number];
  freezeBackbone?: boolean;
  seed?: number;
}

export interface WeightsReport {
  loaded: string[];
  missing: string[];
  unexpected: string[];
  mismatched: string[];
}

export interface NativeModel {
  /** The model family of the backbone (`convnext`, `convnextv2`), as registered in native/model/registry.cc. */
  readonly family: string;
  readonly variant: string;
  readonly head: HeadKind;
  readonly inChans: number;
  readonly numFeatures: number;
  readonly outputNames: string[];
  stateDictShapes(): Record<string, number[]>;
  numParameters(trainableOnly?: boolean): number;
  loadWeights(path: string, options?: { strict?: boolean }): Promise<WeightsReport>;
  saveWeights(path: string): Promise<void>;
  setBackboneFrozen(frozen: boolean): void;
}

export interface NativeDataset {
  readonly size: number;
  readonly inputShape: number[];
  readonly targetShape: number[];
  describe(): string;
}

export interface OptimizerOptions {
  name?: 'adamw' | 'sgd';
  lr?: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
}

export interface ScheduleOptions {
  name?: 'cosine' | 'constant';
  warmupSteps?: number;
  totalSteps?: number;
  minLr?: number;
}

/** deg = center + normalised × scale, for position errors in metres. */
export interface PositionScale {
  latCenter: number;
  lonCenter: number;
  latScale: number;
  lonScale: number;
}

export type Precision = '32' | 'bf16-mixed' | '16-mixed';

export interface NativeEngineOptions {
  device?: string;
  optimizer?: OptimizerOptions;
  schedule?: ScheduleOptions;
  loss?: 'auto' | 'gaussian_nll' | 'cross_entropy' | 'mse';
  labelSmoothing?: number;
  gradClipNorm?: number;
  accumulate?: number;
  precision?: Precision;
  channelsLast?: boolean;
  seed?: number;
  threads?: number;
  positionScale?: PositionScale;
}

export interface BatchEvent {
  epoch: number;
  batch: number;
  step: number;
  batchSize: number;
  lr: number;
  samplesPerSec: number;
  metrics: Record<string, number>;
}

export interface EpochResult {
  epoch: number;
  batches: number;
  samples: number;
  step: number;
  seconds: number;
  samplesPerSec: number;
  stopped: boolean;
  metrics: Record<string, number>;
}

export interface PredictOutput {
  data: Float32Array;
  shape: number[];
}

export interface NativeEngine {
  readonly epoch: number;
  readonly step: number;
  readonly lr: number;
  readonly device: string;
  trainEpoch(data: NativeDataset, options: { batchSize: number; maxEpochs: number }, onBatch?: (e: BatchEvent) => void): Promise<EpochResult>;
  evaluate(data: NativeDataset, options?: { batchSize?: number }): Promise<EpochResult>;
  predict(data: NativeDataset | Float32Array, options?: { batchSize?: number; shape?: number[] }): Promise<Record<string, PredictOutput>>;
  requestStop(): void;
  clearStop(): void;
  saveCheckpoint(path: string, userJson?: string): Promise<void>;
  loadCheckpoint(path: string): Promise<string>;
}

export interface VariantInfo {
  name: string;
  family: string;
  depths: number[];
  dims: number[];
}

export interface NativeAddon {
  torchInfo(): TorchInfo;
  setNumThreads(threads: number): void;
  variants: VariantInfo[];
  Model: {
    new (options?: NativeModelOptions): NativeModel;
    /** Builds (initialises the weights of) the model on a worker thread. */
    create(options?: NativeModelOptions): Promise<NativeModel>;
  };
  Engine: new (model: NativeModel, options?: NativeEngineOptions) => NativeEngine;
  NativeDataset: new () => NativeDataset;
  tensorDataset(inputs: Float32Array, inputShape: number[], targets?: Float32Array | Int32Array | BigInt64Array, targetShape?: number[]): NativeDataset;
  subset(data: NativeDataset, indices: number[]): NativeDataset;
  referenceSplit(n: number, seed: number): { train: number[]; val: number[]; test: number[] };
  // Registered by other binding files (Heimdall data, ONNX) when present.
  [extra: string]: unknown;
}

/** The package root: the nearest folder above this file whose package.json names heimdall-torch. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'heimdall-torch') return dir;
      } catch {
        /* keep looking */
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('heimdall-torch: cannot find the package root above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

let cached: NativeAddon | undefined;

/**
 * The addon file: HEIMDALL_TORCH_ADDON, else what node-gyp-build picks — a source build in build/Release,
 * else the prebuild for this platform (prebuilds/linux-x64/heimdall-torch.node).
 */
export function addonPath(): string {
  const override = process.env.HEIMDALL_TORCH_ADDON;
  if (override) {
    if (!existsSync(override)) {
      throw new Error(`heimdall-torch: HEIMDALL_TORCH_ADDON=${override} does not exist. Unset it to use the package's own addon.`);
    }
    return override;
  }
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  const gypBuild = require('node-gyp-build') as { path(dir: string): string };
  try {
    return gypBuild.path(root);
  } catch (err) {
    throw new Error(
      `heimdall-torch: no native addon for ${process.platform}-${process.arch} (no build/Release and no fitting prebuild in ` +
        `${join(root, 'prebuilds')}). Build it from source: \`npm rebuild heimdall-torch\` (needs cmake, a C++20 compiler and ` +
        `libtorch: \`pip install torch==2.15.0\`); in a checkout: \`npm run build:native\`. (${(err as Error).message})`,
    );
  }
}

/**
 * Loads the addon once. libtorch is found at run time (LIBTORCH, a Python torch, a system install) and
 * preloaded through the loader shim next to the addon (lib/loader/libtorch.ts); no LD_LIBRARY_PATH needed.
 */
export function native(): NativeAddon {
  if (cached) return cached;
  const found = addonPath();
  loadLibtorch(found, { packageRoot: packageRoot() });
  const require = createRequire(import.meta.url);
  try {
    cached = require(found) as NativeAddon;
  } catch (err) {
    const msg = (err as Error).message;
    const lib = loadedLibtorch();
    const hint = /libtorch|libc10|undefined symbol/.test(msg)
      ? ` The addon was built against ${JSON.stringify(readBuildRecord(found)?.libtorch.full ?? 'an unknown libtorch')}` +
        (lib ? `; the process loaded ${lib.libtorch}` : '') +
        `. Install the matching one (\`${fixCommand(readBuildRecord(found))}\`) or set LIBTORCH to it.`
      : '';
    throw new Error(`heimdall-torch: cannot load the native addon ${found}: ${msg}.${hint}`);
  }
  return cached;
}

export function torchInfo(): TorchInfo {
  return native().torchInfo();
}
