// loadModel(): an exported heimdall-torch ONNX model, from the MLflow registry, a run, an artifact store or a
// local path, opened in ONNX Runtime (onnxruntime-node) with the metadata the exporter wrote (variant, input
// shape, target normalisation, feature constants, receivers). predict() takes IQ (features computed natively,
// as the data sets compute them for training) or ready features, and returns positions in degrees with
// uncertainties (σ in degrees and metres).
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type * as Ort from 'onnxruntime-node';
import { computeFeatures, EARTH_RADIUS_M, haversineM, summarizeErrors, type ErrorSummary } from '../data/heimdall.js';
import { loadNpy } from '../data/npy.js';
import { MLflowTracker, type MLflowTrackerOptions } from '../tracking/tracker.js';
import { fetchArtifact, type FetchedArtifact } from './artifacts.js';
import { badFile, badInput, InferenceError } from './errors.js';
import { requireOnnxRuntime } from '../onnx/runtime.js';
import { loadOnnxRuntime } from '../onnx/runtime_load.js';
import { readOnnxInfo } from './onnx_file.js';
import { needsTracker, resolveModelUri, type RegisteredSource } from './uri.js';

/** Target normalisation: deg = center + normalised × half_range. */
export interface PositionNormalization {
  latCenter: number;
  lonCenter: number;
  latHalfRange: number;
  lonHalfRange: number;
}

/** The mel feature constants the model was trained with (see native/data/heimdall/mel.h). */
export interface ModelFeatureConfig {
  sampleRate: number;
  nFft: number;
  hop: number;
  nMels: number;
  frames: number;
  amin: number;
  floorDb: number;
  refDb: number;
  scaleDb: number;
}

export interface ModelMetadata {
  variant: string;
  head: string;
  inChans: number;
  inputName: string;
  /** [channels, height, width]; -1 where the graph leaves it free. */
  inputShape: number[];
  outputNames: string[];
  normalization: PositionNormalization | null;
  features: ModelFeatureConfig | null;
  receivers: { name: string; lat: number; lon: number; alt: number }[];
  heimdallTorchVersion: string | null;
  libtorchVersion: string | null;
  /** Every metadata_props entry of the file. */
  raw: Record<string, string>;
}

/** One predicted position: degrees, with the model's σ in degrees and metres. */
export interface PredictedPosition {
  lat: number;
  lon: number;
  sigmaLatDeg: number;
  sigmaLonDeg: number;
  sigmaLatM: number;
  sigmaLonM: number;
}

export interface Prediction {
  count: number;
  /** Localization models: one entry per sample. Empty for other heads. */
  positions: PredictedPosition[];
  /** The ONNX outputs as they came (normalised units for localization). */
  outputs: Record<string, { data: Float32Array; shape: number[] }>;
  /** The features that went in, [N, C, H, W]. */
  featureShape: number[];
}

export type PredictInput =
  | { features: Float32Array; shape: number[] }
  /** Interleaved (re, im) float32 IQ of shape [N, receivers, samples] (or [receivers, samples]). */
  | { iq: Float32Array; shape: number[]; sampleRate?: number };

export interface LoadModelOptions {
  /** Tracker for models:/ and runs:/ URIs and remote artifact stores (default: one from the environment, closed after loading). */
  tracker?: MLflowTracker;
  trackerOptions?: MLflowTrackerOptions;
  /** Download remote artifacts here instead of a temporary directory (kept). */
  downloadDir?: string;
  intraOpNumThreads?: number;
}

// The defaults of MelConfig (native/data/heimdall/mel.h): what computeFeatures() uses.
const NATIVE_FEATURES = { nFft: 2048, hop: 512, nMels: 128, frames: 32, amin: 1e-20, floorDb: -140, refDb: -80, scaleDb: 20 };

function num(v: unknown, what: string, file: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw badFile(`${file}: metadata ${what} is not a number`);
  return v;
}

/** Parses our metadata_props (heimdall.*) into ModelMetadata. */
export function parseModelMetadata(raw: Record<string, string>, file: string, session?: { inputNames: readonly string[]; outputNames: readonly string[] }): ModelMetadata {
  const variant = raw['heimdall.variant'];
  const head = raw['heimdall.head'];
  if (!variant || !head) {
    throw badFile(`${file} is an ONNX model without heimdall-torch metadata (heimdall.variant, heimdall.head): export it with heimdall-torch (\`heimdall-torch export\` or exportOnnx())`);
  }
  const shapeText = raw['heimdall.input_shape'] ?? '';
  const inputShape = shapeText.replace(/^\[|\]$/g, '').split(',').map((s) => (/^\s*\d+\s*$/.test(s) ? Number(s) : -1));
  let normalization: PositionNormalization | null = null;
  let features: ModelFeatureConfig | null = null;
  let receivers: ModelMetadata['receivers'] = [];
  const data = raw['heimdall.data'];
  if (data) {
    let d: { normalization?: Record<string, number>; features?: Record<string, number>; receivers?: ModelMetadata['receivers'] };
    try {
      d = JSON.parse(data) as typeof d;
    } catch (e) {
      throw badFile(`${file}: metadata heimdall.data is not valid JSON (${(e as Error).message})`);
    }
    if (d.normalization) {
      const n = d.normalization;
      normalization = {
        latCenter: num(n.lat_center, 'normalization.lat_center', file), lonCenter: num(n.lon_center, 'normalization.lon_center', file),
        latHalfRange: num(n.lat_half_range, 'normalization.lat_half_range', file), lonHalfRange: num(n.lon_half_range, 'normalization.lon_half_range', file),
      };
    }
    if (d.features) {
      const f = d.features;
      features = {
        sampleRate: num(f.sample_rate, 'features.sample_rate', file), nFft: num(f.n_fft, 'features.n_fft', file), hop: num(f.hop, 'features.hop', file),
        nMels: num(f.n_mels, 'features.n_mels', file), frames: num(f.frames, 'features.frames', file), amin: num(f.amin, 'features.amin', file),
        floorDb: num(f.floor_db, 'features.floor_db', file), refDb: num(f.ref_db, 'features.ref_db', file), scaleDb: num(f.scale_db, 'features.scale_db', file),
      };
    }
    receivers = Array.isArray(d.receivers) ? d.receivers : [];
  }
  return {
    variant,
    head,
    inChans: Number(raw['heimdall.in_chans'] ?? inputShape[0] ?? -1),
    inputName: session?.inputNames[0] ?? raw['heimdall.input_name'] ?? 'mel_spectrogram',
    inputShape,
    outputNames: session ? [...session.outputNames] : (raw['heimdall.output_names'] ?? '').split(',').filter(Boolean),
    normalization,
    features,
    receivers,
    heimdallTorchVersion: raw['heimdall.heimdall_torch_version'] ?? null,
    libtorchVersion: raw['heimdall.libtorch_version'] ?? null,
    raw,
  };
}

/** The .onnx file inside an MLflow model directory (MLmodel's onnx flavor `data`), or the only .onnx file there. */
async function modelFileIn(dir: string, label: string): Promise<string> {
  const mlmodel = await readFile(join(dir, 'MLmodel'), 'utf8').catch(() => null);
  if (mlmodel !== null) {
    const onnx = /^ {2}onnx:\s*\n((?: {4}.*\n?)*)/m.exec(mlmodel);
    if (!onnx) throw badFile(`${label}/MLmodel has no onnx flavor: it is not an ONNX model directory`);
    const data = /^ {4}data:\s*(.+)$/m.exec(onnx[1]!);
    if (!data) throw badFile(`${label}/MLmodel: the onnx flavor names no data file`);
    const name = data[1]!.trim().replace(/^["']|["']$/g, '');
    if (!(await stat(join(dir, name)).catch(() => null))?.isFile()) throw badFile(`${label}: MLmodel names ${name}, which is not in the model directory`);
    return join(dir, name);
  }
  const onnx = (await readdir(dir)).filter((f) => f.endsWith('.onnx'));
  if (onnx.length === 1) return join(dir, onnx[0]!);
  throw badFile(`${label} is a directory without an MLmodel file and with ${onnx.length} .onnx files: point at the .onnx file or an MLflow model directory`);
}

/** onnxruntime-node (an optional peer dependency: a coded error naming the install command when absent). */
const LOAD_NEEDS_ORT = 'loadModel() (running an exported model)';
const ort = (): Promise<typeof Ort> => loadOnnxRuntime(LOAD_NEEDS_ORT);

export class OnnxModel {
  private constructor(
    readonly uri: string,
    /** Where the model came from: the artifact URI (or local path) it was read from. */
    readonly source: string,
    readonly metadata: ModelMetadata,
    readonly registered: RegisteredSource | null,
    readonly runId: string | null,
    private session: Ort.InferenceSession | null,
  ) {}

  /** Opens a local .onnx file (its external data next to it). */
  static async openFile(path: string, info: { uri?: string; source?: string; registered?: RegisteredSource | null; runId?: string | null; intraOpNumThreads?: number } = {}): Promise<OnnxModel> {
    const fileInfo = await readOnnxInfo(path);
    const o = await ort();
    let session: Ort.InferenceSession;
    try {
      session = await o.InferenceSession.create(path, { intraOpNumThreads: info.intraOpNumThreads ?? 2, interOpNumThreads: 1 });
    } catch (e) {
      throw badFile(`${path}: ONNX Runtime cannot open it: ${(e as Error).message}`, e);
    }
    const metadata = parseModelMetadata(fileInfo.metadata, path, session);
    return new OnnxModel(info.uri ?? path, info.source ?? path, metadata, info.registered ?? null, info.runId ?? null, session);
  }

  get inputName(): string {
    return this.metadata.inputName;
  }

  /** Runs the model on IQ or features; see PredictInput. */
  async predict(input: PredictInput, options: { batchSize?: number } = {}): Promise<Prediction> {
    if (!this.session) throw new InferenceError('HEIMDALL_INVALID_ARGUMENT', `model ${this.uri} is closed`);
    const { data, shape } = 'iq' in input ? this.featuresOfIq(input) : this.checkFeatures(input.features, input.shape);
    const o = await ort();
    const [n, c, h, w] = shape as [number, number, number, number];
    const per = c * h * w;
    const batch = Math.max(1, options.batchSize ?? 32);
    const outputs: Record<string, { data: Float32Array; shape: number[] }> = {};
    for (let start = 0; start < n; start += batch) {
      const b = Math.min(batch, n - start);
      const t = new o.Tensor('float32', data.subarray(start * per, (start + b) * per), [b, c, h, w]);
      const r = await this.session.run({ [this.metadata.inputName]: t });
      for (const name of this.metadata.outputNames) {
        const y = r[name]!;
        const width = y.dims.length > 1 ? Number(y.dims[1]) : 1;
        outputs[name] ??= { data: new Float32Array(n * width), shape: [n, width] };
        outputs[name].data.set(y.data as Float32Array, start * width);
      }
    }
    return { count: n, positions: this.toPositions(outputs, n), outputs, featureShape: shape };
  }

  /** Converts normalised localization outputs into degrees and σ. */
  private toPositions(outputs: Prediction['outputs'], n: number): PredictedPosition[] {
    if (this.metadata.head !== 'localization') return [];
    const p = outputs.positions?.data;
    const u = outputs.uncertainties?.data;
    const s = this.metadata.normalization;
    if (!p || !s) {
      throw badFile(`${this.uri}: the model has no target normalisation (metadata heimdall.data): re-export it with \`heimdall-torch export\`, which records it`);
    }
    const out: PredictedPosition[] = [];
    const mPerDeg = (Math.PI / 180) * EARTH_RADIUS_M;
    for (let i = 0; i < n; i++) {
      const lat = s.latCenter + p[2 * i]! * s.latHalfRange;
      const lon = s.lonCenter + p[2 * i + 1]! * s.lonHalfRange;
      const sLat = (u?.[2 * i] ?? NaN) * s.latHalfRange;
      const sLon = (u?.[2 * i + 1] ?? NaN) * s.lonHalfRange;
      out.push({ lat, lon, sigmaLatDeg: sLat, sigmaLonDeg: sLon, sigmaLatM: sLat * mPerDeg, sigmaLonM: sLon * mPerDeg * Math.cos((lat * Math.PI) / 180) });
    }
    return out;
  }

  private checkFeatures(data: Float32Array, shape: number[]): { data: Float32Array; shape: number[] } {
    if (!(data instanceof Float32Array)) throw badInput('predict: features must be a Float32Array');
    const full = shape.length === 3 ? [1, ...shape] : shape;
    if (full.length !== 4 || full.some((d) => !Number.isInteger(d) || d < 1)) {
      throw badInput(`predict: features shape [${shape.join(', ')}] must be [batch, channels, height, width] or [channels, height, width]`);
    }
    const expected = this.metadata.inputShape;
    const names = ['channels', 'height', 'width'];
    for (let k = 0; k < 3; k++) {
      const want = k === 0 ? this.metadata.inChans : expected[k];
      if (want !== undefined && want > 0 && full[k + 1] !== want) {
        throw new InferenceError('HEIMDALL_SHAPE_MISMATCH',
          `predict: features have ${names[k]} ${full[k + 1]}, the model ${this.uri} takes [${this.metadata.inChans}, ${expected.slice(1).map((d) => (d < 0 ? '?' : d)).join(', ')}]`);
      }
    }
    const count = full.reduce((a, b) => a * b, 1);
    if (data.length !== count) throw badInput(`predict: features hold ${data.length} values, shape [${full.join(', ')}] needs ${count}`);
    return { data, shape: full };
  }

  /** IQ → mel features with the native code the data sets use, with the model's feature constants. */
  featuresOfIq(input: { iq: Float32Array; shape: number[]; sampleRate?: number }): { data: Float32Array; shape: number[] } {
    const f = this.metadata.features;
    const sampleRate = input.sampleRate ?? f?.sampleRate;
    if (!sampleRate) throw badInput(`predict: the model ${this.uri} records no sample rate (heimdall.data): pass sampleRate`);
    if (!(input.iq instanceof Float32Array)) throw badInput('predict: iq must be a Float32Array of interleaved (re, im) pairs');
    const shape = input.shape.length === 2 ? [1, ...input.shape] : input.shape;
    if (shape.length !== 3) throw badInput(`predict: iq shape [${input.shape.join(', ')}] must be [batch, receivers, samples] or [receivers, samples]`);
    if (shape[1] !== this.metadata.inChans) {
      throw new InferenceError('HEIMDALL_SHAPE_MISMATCH', `predict: the IQ has ${shape[1]} receivers, the model ${this.uri} takes ${this.metadata.inChans}`);
    }
    const count = shape.reduce((a, b) => a * b, 1) * 2;
    if (input.iq.length !== count) throw badInput(`predict: iq holds ${input.iq.length} floats, shape [${shape.join(', ')}] of (re, im) pairs needs ${count}`);
    if (f) {
      for (const k of ['nFft', 'hop', 'nMels', 'frames', 'amin'] as const) {
        if (f[k] !== NATIVE_FEATURES[k]) throw badFile(`${this.uri}: the model was trained with features.${k} = ${f[k]}; this build computes ${NATIVE_FEATURES[k]}`);
      }
      if (f.floorDb < NATIVE_FEATURES.floorDb) throw badFile(`${this.uri}: features.floor_db ${f.floorDb} is below the native floor ${NATIVE_FEATURES.floorDb} dB`);
    }
    let r: { data: Float32Array; shape: number[] };
    try {
      r = computeFeatures(input.iq, shape, sampleRate);
    } catch (e) {
      throw new InferenceError((e as { code?: string }).code === 'HEIMDALL_SHAPE_MISMATCH' ? 'HEIMDALL_SHAPE_MISMATCH' : 'HEIMDALL_INVALID_ARGUMENT',
        `predict: cannot compute features of the IQ: ${(e as Error).message}`, { cause: e });
    }
    // computeFeatures normalises with the native defaults; a model trained with other dB constants (a manifest's
    // features) gets its own: x = (max(dB, floor) − ref) / scale. (Frames padded for IQ shorter than 32 hops
    // are the exception: training pads with 0 in its own units.)
    if (f && (f.floorDb !== NATIVE_FEATURES.floorDb || f.refDb !== NATIVE_FEATURES.refDb || f.scaleDb !== NATIVE_FEATURES.scaleDb)) {
      const d = r.data;
      for (let i = 0; i < d.length; i++) {
        const db = d[i]! * NATIVE_FEATURES.scaleDb + NATIVE_FEATURES.refDb;
        d[i] = (Math.max(db, f.floorDb) - f.refDb) / f.scaleDb;
      }
    }
    return r;
  }

  /**
   * Predicts every `<id>_iq.npy` of a data directory (the training format; manifest.json's sample_rate is used
   * when present). Where `<id>_label.npy` exists, the error in metres is reported per sample and summarised.
   */
  async predictDirectory(dir: string, options: { batchSize?: number } = {}): Promise<DirectoryPrediction> {
    const st = await stat(dir).catch(() => null);
    if (!st?.isDirectory()) throw badInput(`${dir} is not a directory`, 'dir');
    const manifest = await readFile(join(dir, 'manifest.json'), 'utf8').then((t) => JSON.parse(t) as { sample_rate?: number }, (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return {} as { sample_rate?: number };
      throw badFile(`${join(dir, 'manifest.json')}: ${e.message}`);
    });
    const ids = (await readdir(dir)).filter((f) => f.endsWith('_iq.npy')).map((f) => f.slice(0, -'_iq.npy'.length)).sort();
    if (!ids.length) throw badInput(`${dir} holds no <id>_iq.npy files`, 'dir');
    const feats: Float32Array[] = [];
    let fshape: number[] = [];
    const labels: ([number, number] | null)[] = [];
    for (const id of ids) {
      const file = join(dir, `${id}_iq.npy`);
      const a = await loadNpy(file);
      if (a.dtype !== '<c8') throw badFile(`${file}: dtype ${a.dtype}, expected complex64 IQ`);
      const shape = a.shape.slice(0, -1);
      const iqShape = shape.length === 1 ? [1, 1, shape[0]!] : [1, ...shape];
      let f;
      try {
        f = this.featuresOfIq({ iq: a.data, shape: iqShape, sampleRate: manifest.sample_rate });
      } catch (e) {
        throw new InferenceError((e as InferenceError).code ?? 'HEIMDALL_INVALID_ARGUMENT', `${file}: ${(e as Error).message}`, { cause: e });
      }
      feats.push(f.data);
      fshape = f.shape.slice(1);
      const labelFile = join(dir, `${id}_label.npy`);
      if ((await stat(labelFile).catch(() => null))?.isFile()) {
        const l = await loadNpy(labelFile);
        if (l.data.length !== 2) throw badFile(`${labelFile}: shape [${l.shape.join(', ')}], expected [2] (lat, lon)`);
        labels.push([l.data[0]!, l.data[1]!]);
      } else labels.push(null);
    }
    const per = feats[0]!.length;
    const all = new Float32Array(per * feats.length);
    feats.forEach((f, i) => all.set(f, i * per));
    const p = await this.predict({ features: all, shape: [feats.length, ...fshape] }, options);
    const samples = ids.map((id, i) => {
      const pos = p.positions[i]!;
      const label = labels[i];
      return { id, ...pos, label: label ? { lat: label[0], lon: label[1] } : null, errorM: label ? haversineM(pos.lat, pos.lon, label[0], label[1]) : null };
    });
    const errors = samples.flatMap((s) => (s.errorM === null ? [] : [s.errorM]));
    return { dir, samples, error: errors.length ? summarizeErrors(errors) : null, prediction: p };
  }

  async close(): Promise<void> {
    const s = this.session;
    this.session = null;
    await s?.release();
  }
}

export interface DirectoryPrediction {
  dir: string;
  samples: (PredictedPosition & { id: string; label: { lat: number; lon: number } | null; errorM: number | null })[];
  /** Position error summary over the samples with labels (null when none has one). */
  error: ErrorSummary | null;
  prediction: Prediction;
}

/**
 * Loads a model by URI: `models:/<name>/<stage|version|latest>`, `models:/<name>@<alias>`, `runs:/<id>/<path>`,
 * an artifact URI (s3://, mlflow-artifacts:/, file://) or a local path (an .onnx file or an MLflow model directory).
 */
export async function loadModel(uri: string, options: LoadModelOptions = {}): Promise<OnnxModel> {
  if (typeof uri !== 'string' || !uri.trim()) throw badInput('loadModel: the model URI or path is empty');
  requireOnnxRuntime(LOAD_NEEDS_ORT);  // before anything is downloaded
  const owned = !options.tracker && (needsTracker(uri) || /^(s3|mlflow-artifacts):/i.test(uri));
  const tracker = options.tracker ?? (owned ? new MLflowTracker({ handleSignals: false, ...options.trackerOptions }) : undefined);
  let fetched: FetchedArtifact | null = null;
  try {
    const resolved = await resolveModelUri(uri, tracker);
    const cfg = tracker?.config ?? new MLflowTracker({ handleSignals: false, ...options.trackerOptions }).config;
    fetched = await fetchArtifact(resolved.artifactUri, cfg, options.downloadDir);
    const label = resolved.artifactUri;
    const file = fetched.isDir ? await modelFileIn(fetched.localPath, label) : fetched.localPath;
    return await OnnxModel.openFile(file, {
      uri, source: resolved.artifactUri, registered: resolved.registered, runId: resolved.runId, intraOpNumThreads: options.intraOpNumThreads,
    });
  } finally {
    // Exactly the temporary directory the download created (never a parent of it: see FetchedArtifact).
    if (fetched?.downloadRoot) await rm(fetched.downloadRoot, { recursive: true, force: true });
    if (owned) await tracker!.close();
  }
}
