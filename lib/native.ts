// The single place that loads the native addon and declares its types. Everything else in lib/ goes
// through the small typed functions and classes exported here. The addon's errors become HeimdallErrors here,
// once, at the loader (see wrapAddon), and every Engine gets complete options (lib/config.ts' engineOptionsSchema).
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { engineOptionsSchema, parseOptions, processGroupSchema, type EngineConfigInput, type ProcessGroupInput } from './config.js';
import { HeimdallError } from './errors.js';
import { fixCommand, loadLibtorch, loadedLibtorch, readBuildRecord } from './loader/libtorch.js';

/** Error codes the native side attaches to `error.code` (declared with every other code in lib/errors.ts). */
export type { NativeErrorCode } from './errors.js';

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
  /** libtorch's process-wide algorithm flags (Trainer({ deterministic, benchmark }) sets them). */
  deterministicAlgorithms: 'on' | 'off' | 'warn';
  deterministicCudnn: boolean;
  cudnnBenchmark: boolean;
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

// ---- engine ----------------------------------------------------------------------------------------------

/** The Engine's options; omitted fields take lib/config.ts' defaults (the binding requires every field). */
export type NativeEngineOptions = EngineConfigInput;
export type OptimizerOptions = NonNullable<NativeEngineOptions['optimizer']>;
export type ScheduleOptions = NonNullable<NativeEngineOptions['schedule']>;
export type Precision = NonNullable<NativeEngineOptions['precision']>;

/** deg = center + normalised × scale, for position errors in metres. */
export interface PositionScale {
  latCenter: number;
  lonCenter: number;
  latScale: number;
  lonScale: number;
}

export interface BatchEvent {
  epoch: number;
  batch: number;
  step: number;
  batchSize: number;
  lr: number;
  /** This batch's samples ÷ its compute time (forward, backward, step; data loading not counted). */
  samplesPerSec: number;
  /** When the batch ended: seconds on a monotonic clock since the engine was made (wall-clock rates from two events). */
  time: number;
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
  /** `maxSteps` ended the epoch early (it resumes at its next batch). */
  maxStepsReached: boolean;
  /** `pauseAfter` ended this call inside the epoch: the next trainEpoch call goes on with it (metrics so far here). */
  paused: boolean;
  /** Data-parallel: seconds this rank spent in collectives (gradient all-reduce, per-batch agreement); 0 alone. */
  syncSeconds: number;
  metrics: Record<string, number>;
}

export interface PredictOutput {
  data: Float32Array;
  shape: number[];
}

export interface NativeEngine {
  readonly epoch: number;
  readonly step: number;
  /** Batches of the current epoch already trained (0 between epochs). */
  readonly batchInEpoch: number;
  /** Batches per optimizer step. */
  readonly accumulate: number;
  /** BackboneFinetuning: (un)freezes the backbone, whose rate becomes lrScale × the schedule's (between epochs). */
  setBackboneTrainable(trainable: boolean, lrScale: number): Promise<void>;
  /** Batches per optimizer step from the next batch on; refused while gradients are pending (mid-accumulation). */
  setAccumulate(batches: number): Promise<void>;
  /** EMA updates of the weight average so far (0: none, or EMA off). */
  readonly emaUpdates: number;
  /** EMA: the weights become the average (Lightning's WeightAveraging at the end of fit); the average restarts. */
  applyAverage(): Promise<void>;
  /** SWA (engine made with swa): average += (weights − average) / (n + 1). */
  updateSwa(): Promise<void>;
  /** A learning rate instead of the schedule's (SWALR); ≤ 0: the schedule's again. Saved in checkpoints. */
  setLrOverride(lr: number): Promise<void>;
  /** The heads' BatchNorm running statistics recomputed from the current weights (Precise BatchNorm). */
  recalibrate(data: NativeDataset, options: { batchSize: number }): Promise<void>;
  readonly lr: number;
  readonly device: string;
  /**
   * One epoch (or its first `maxBatches` batches), stopping before optimizer step `maxSteps + 1`; with `pauseAfter`,
   * returns (`paused`) once the epoch's first `pauseAfter` batches are trained, and the next call goes on from there.
   */
  trainEpoch(data: NativeDataset, options: { batchSize: number; maxEpochs: number; maxBatches?: number; maxSteps?: number; pauseAfter?: number; shuffle?: boolean }, onBatch?: (e: BatchEvent) => void): Promise<EpochResult>;
  /** The whole split, or its first `maxBatches` batches. */
  evaluate(data: NativeDataset, options?: { batchSize?: number; maxBatches?: number }): Promise<EpochResult>;
  predict(data: NativeDataset | Float32Array, options?: { batchSize?: number; shape?: number[] }): Promise<Record<string, PredictOutput>>;
  requestStop(): void;
  clearStop(): void;
  saveCheckpoint(path: string, userJson?: string): Promise<void>;
  loadCheckpoint(path: string): Promise<string>;
  /**
   * Data-parallel training from now on (collective: every rank calls it): rank 0's weights are broadcast,
   * trainEpoch trains this rank's shard and averages gradients over the ranks, evaluate reduces its metrics.
   * null: one process again.
   */
  setProcessGroup(group: NativeProcessGroup | null): Promise<void>;
}

// ---- process groups (native/napi/dist_binding.cc) ----------------------------------------------------------

export interface NativeProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: string;
  /** A small string in the group's store (not collective). */
  set(key: string, value: string): Promise<void>;
  /** Waits up to timeoutMs for a key some rank sets. */
  get(key: string, timeoutMs?: number): Promise<string>;
  /** Collective: the element-wise sum over the ranks. */
  allreduceSum(values: number[]): Promise<number[]>;
  barrier(): Promise<void>;
}

// ---- data (native/napi/data_binding.cc) ---------------------------------------------------------------------

export interface FeatureConfig {
  sampleRate: number;
  nFft: number;
  hop: number;
  nMels: number;
  frames: number;
  melScale: 'htk';
  amin: number;
  /** x = (max(10·log10(max(mel, amin)), floorDb) − refDb) / scaleDb */
  floorDb: number;
  refDb: number;
  scaleDb: number;
}

export interface Receiver {
  name: string;
  lat: number;
  lon: number;
  alt: number;
}

export interface HeimdallDataInfo {
  /** deg = center + normalised × scale (targets are normalised positions [lat, lon]). */
  positionScale: PositionScale;
  features: FeatureConfig;
  receivers: Receiver[];
  /** The same as JSON, for ONNX metadata_props / MLflow params. */
  metadataJson: string;
}

export interface NpyArray {
  data: Float32Array;
  shape: number[];
  /** The file's dtype: '<f4', '<f8' or '<c8'. */
  dtype: string;
}

/** The Heimdall data functions (validated options in, native data sets out). */
export interface DataBinding {
  heimdallSynthetic(options: object): NativeDataset;
  heimdallDirectory(path: string, options: object): Promise<NativeDataset>;
  heimdallMaterialize(data: NativeDataset): Promise<void>;
  heimdallInfo(data: NativeDataset): HeimdallDataInfo | null;
  heimdallPositions(data: NativeDataset): Float64Array;
  writeSynthetic(dir: string, samples: number, options: object): Promise<{ written: number }>;
  computeFeatures(iq: Float32Array, shape: number[], sampleRate: number, options?: { complex?: boolean }): { data: Float32Array; shape: number[] };
  readNpy(path: string): Promise<NpyArray>;
}

// ---- onnx (native/napi/onnx_binding.cc) -----------------------------------------------------------------------

export interface NativeTensor {
  data: Float32Array;
  shape: number[];
}

export interface NativeExportResult {
  /** The model exported (from the Model, or the weights file's heimdall.* metadata). */
  variant: string;
  head: string;
  inChans: number;
  /** The model file written, and its external-data side file (null when the weights are inside the model file). */
  path: string;
  dataPath: string | null;
  modelBytes: number;
  dataBytes: number;
  inputName: string;
  /** [batch, C, H, W], -1 where symbolic. */
  inputShape: number[];
  outputNames: string[];
  /** ai.onnx opset and ONNX IR version of the file. */
  opset: number;
  irVersion: number;
  /** Graph nodes, initializers (of which external), weights. */
  nodes: number;
  initializers: number;
  externalTensors: number;
  parameters: number;
  /** metadata_props of the file. */
  metadata: Record<string, string>;
  /** Seconds the export took. */
  seconds: number;
  /** libtorch's outputs on the validation batches, for the ONNX Runtime comparison. */
  libtorch: { shape: number[]; input: Float32Array; outputs: Record<string, NativeTensor> }[];
}

export interface OnnxBinding {
  exportOnnx(source: NativeModel | string, outPath: string, options: Record<string, unknown>): Promise<NativeExportResult>;
}

// ---- the addon ------------------------------------------------------------------------------------------------

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
  /** Joins a process group (TCPStore rendezvous, then Gloo or NCCL); options completed by processGroupSchema. */
  createProcessGroup(options: ProcessGroupInput): Promise<NativeProcessGroup>;
}

/** What the addon file exports: the core, and the data and ONNX parts when this build has them. */
type AddonExports = NativeAddon & Partial<DataBinding> & Partial<OnnxBinding>;

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
    if (up === dir) throw new HeimdallError('HEIMDALL_INTERNAL', 'heimdall-torch: cannot find the package root above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

let cached: AddonExports | undefined;

/**
 * The addon file: HEIMDALL_TORCH_ADDON, else what node-gyp-build picks — a source build in build/Release,
 * else the prebuild for this platform (prebuilds/linux-x64/heimdall-torch.node).
 */
export function addonPath(): string {
  const override = process.env.HEIMDALL_TORCH_ADDON;
  if (override) {
    if (!existsSync(override)) {
      throw new HeimdallError('HEIMDALL_ADDON_NOT_FOUND', `heimdall-torch: HEIMDALL_TORCH_ADDON=${override} does not exist. Unset it to use the package's own addon.`);
    }
    return override;
  }
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  const gypBuild = require('node-gyp-build') as { path(dir: string): string };
  try {
    return gypBuild.path(root);
  } catch (err) {
    throw new HeimdallError('HEIMDALL_ADDON_NOT_FOUND',
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
  return addon();
}

function addon(): AddonExports {
  if (cached) return cached;
  const found = addonPath();
  loadLibtorch(found, { packageRoot: packageRoot() });
  const require = createRequire(import.meta.url);
  let raw: AddonExports;
  try {
    raw = require(found) as AddonExports;
  } catch (err) {
    const msg = (err as Error).message;
    const lib = loadedLibtorch();
    const mismatch = /libtorch|libc10|undefined symbol/.test(msg);
    const hint = mismatch
      ? ` The addon was built against ${JSON.stringify(readBuildRecord(found)?.libtorch.full ?? 'an unknown libtorch')}` +
        (lib ? `; the process loaded ${lib.libtorch}` : '') +
        `. Install the matching one (\`${fixCommand(readBuildRecord(found))}\`) or set LIBTORCH to it.`
      : '';
    throw new HeimdallError(mismatch ? 'HEIMDALL_LIBTORCH_INCOMPATIBLE' : 'HEIMDALL_ADDON_LOAD',
      `heimdall-torch: cannot load the native addon ${found}: ${msg}.${hint}`, { cause: err });
  }
  cached = wrapAddon(raw);
  return cached;
}

// ---- error translation and complete options, once, at the loader --------------------------------------------
// The binding throws plain Errors with a string `code`; every function, method and constructor of the addon is
// wrapped here so that callers see HeimdallErrors (HeimdallError.fromNative). The wrappers cost a try/catch, one
// `instanceof Promise` and one map lookup per call; per-batch work never crosses them (batch events are calls
// *from* native), and the engine's accessors (epoch, step, lr, device) are left as they are.
// The binding's prototypes are frozen (Node-API defines methods read-only), so each class gets a wrapping
// prototype on top of its own; objects the addon returns (a Model from Model.create, data sets) are moved onto it.

const rethrow = (err: unknown): never => {
  throw HeimdallError.fromNative(err);
};

/** The binding's class prototype → the prototype with translating methods that inherits from it. */
const translatingPrototypes = new Map<object, object>();

function adopt<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    const proto = translatingPrototypes.get(Object.getPrototypeOf(value) as object);
    if (proto) Object.setPrototypeOf(value, proto);
  }
  return value;
}

function translated<F extends (...args: never[]) => unknown>(fn: F): F {
  return function (this: unknown, ...args: Parameters<F>) {
    let result: unknown;
    try {
      result = fn.apply(this, args);
    } catch (err) {
      rethrow(err);
    }
    return result instanceof Promise ? result.then(adopt, rethrow) : adopt(result);
  } as F;
}

/** A prototype over `cls.prototype` whose methods translate errors (accessors are inherited as they are). */
function translatingPrototype(cls: { prototype: object }): object {
  const raw = cls.prototype;
  const proto = Object.create(raw) as object;
  for (const name of Object.getOwnPropertyNames(raw)) {
    const d = Object.getOwnPropertyDescriptor(raw, name);
    if (name === 'constructor' || !d || typeof d.value !== 'function') continue;
    Object.defineProperty(proto, name, { value: translated(d.value as (...a: never[]) => unknown), writable: true, configurable: true, enumerable: d.enumerable ?? false });
  }
  translatingPrototypes.set(raw, proto);
  return proto;
}

/** A class whose constructor, methods and static functions translate errors; `args` may rewrite the arguments first. */
function translatedClass<C extends abstract new (...args: never[]) => object>(cls: C, args?: (a: unknown[]) => unknown[]): C {
  const proto = translatingPrototype(cls);
  const wrapped = function (this: unknown, ...a: unknown[]): object {
    if (!new.target) throw new TypeError(`Class constructor ${cls.name} cannot be invoked without 'new'`);
    try {
      return adopt(Reflect.construct(cls, args ? args(a) : a, new.target) as object);
    } catch (err) {
      return rethrow(err);
    }
  };
  Object.defineProperty(wrapped, 'name', { value: cls.name });
  Object.defineProperty(proto, 'constructor', { value: wrapped, writable: true, configurable: true, enumerable: false });
  wrapped.prototype = proto;
  for (const key of Object.getOwnPropertyNames(cls)) {
    if (['prototype', 'length', 'name', 'caller', 'arguments'].includes(key)) continue;
    const v = (cls as unknown as Record<string, unknown>)[key];
    (wrapped as unknown as Record<string, unknown>)[key] = typeof v === 'function' ? translated(v as (...x: never[]) => unknown).bind(cls) : v;
  }
  return wrapped as unknown as C;
}

/** Engine(model, options): options completed and validated against lib/config.ts' schema (one ConfigError). */
function completeEngineArgs([model, options, ...rest]: unknown[]): unknown[] {
  return [model, parseOptions(engineOptionsSchema, options, 'Engine options'), ...rest];
}

function wrapAddon(raw: AddonExports): AddonExports {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value !== 'function') out[key] = value;
    else if (/^[A-Z]/.test(key)) out[key] = translatedClass(value as new () => object, key === 'Engine' ? completeEngineArgs : undefined);
    else out[key] = translated(value as (...a: never[]) => unknown);
  }
  const createGroup = out.createProcessGroup as ((o: unknown) => Promise<unknown>) | undefined;
  if (createGroup) {
    out.createProcessGroup = (options: unknown) => {
      let complete: unknown;
      try {
        complete = parseOptions(processGroupSchema, options, 'process group options');
      } catch (err) {
        return Promise.reject(err);
      }
      return createGroup(complete);
    };
  }
  return out as unknown as AddonExports;
}

/** The Heimdall data functions; a build without them (native/napi/data_binding.cc) is one clear error. */
export function dataBinding(): DataBinding {
  const a = addon();
  if (typeof a.heimdallSynthetic !== 'function' || typeof a.readNpy !== 'function') {
    throw new HeimdallError('HEIMDALL_INVALID_STATE',
      'heimdall-torch: this build of the native addon lacks the Heimdall data functions (native/napi/data_binding.cc); rebuild with `npm run build:native`.');
  }
  return a as DataBinding;
}

/** The ONNX exporter; a build without it (native/napi/onnx_binding.cc) is one clear error. */
export function onnxBinding(): OnnxBinding {
  const a = addon();
  if (typeof a.exportOnnx !== 'function') {
    throw new HeimdallError('HEIMDALL_INVALID_STATE',
      'this build of the heimdall-torch addon has no ONNX exporter (native/napi/onnx_binding.cc): run `npm run build:native`');
  }
  return a as OnnxBinding;
}

export function torchInfo(): TorchInfo {
  return native().torchInfo();
}
