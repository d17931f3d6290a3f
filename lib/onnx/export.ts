// exportOnnx(): a Model (or a weights / checkpoint file) → an ONNX file written by the native exporter
// (native/onnx, no Python), then validated: the file is opened in ONNX Runtime (onnxruntime-node) and its outputs
// are compared with libtorch's on random batches of several sizes (max |Δ| ≤ 1e-4, mean |Δ| ≤ 1e-5 by default).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { z } from 'zod';
import { HeimdallError } from '../errors.js';
import { onnxBinding, type NativeExportResult, type NativeModel, type OnnxBinding } from '../native.js';
import { requireOnnxRuntime } from './runtime.js';
import { loadOnnxRuntime, onnxRuntimeVersion } from './runtime_load.js';

// ---- options ---------------------------------------------------------------------------------------------

export const exportOnnxOptionsSchema = z.object({
  /** ai.onnx opset, 17 … 23 (LayerNormalization needs 17). */
  opset: z.number().int().min(17).max(23).default(17),
  /** The Gelu op (opset ≥ 20) instead of GELU written with Erf. */
  geluOp: z.boolean().default(false),
  /** Default: `mel_spectrogram` for the localization head, `input` otherwise. */
  inputName: z.string().min(1).optional(),
  /** [channels, height, width]: fixed H and W in the graph (else symbolic), recorded in the metadata. */
  inputShape: z.tuple([z.number().int().min(1), z.number().int().min(32), z.number().int().min(32)]).optional(),
  /** Extra metadata_props, e.g. { 'heimdall.normalization': JSON.stringify({ mean, std }) }. */
  metadata: z.record(z.string(), z.string()).default({}),
  /** Weights above this many bytes go to an external-data side file `<outPath>.data` (default just under 2 GiB). */
  externalDataThreshold: z.number().int().min(0).optional(),
  // For a weights file without heimdall.* metadata (or to override it):
  /** A registered variant (`ConvNeXt.variants()`); the native registry checks the name. */
  variant: z.string().min(1).optional(),
  head: z.enum(['localization', 'classification', 'regression']).optional(),
  inChans: z.number().int().min(1).optional(),
  outputs: z.number().int().min(1).optional(),
  sigmaMin: z.number().positive().optional(),
  sigmaMax: z.number().positive().optional(),
  /** Compare ONNX Runtime with libtorch after writing; `false` to skip. */
  validate: z.union([
    z.literal(false),
    z.object({
      batchSizes: z.array(z.number().int().min(1).max(1024)).min(1).default([1, 4]),
      seed: z.number().int().min(0).default(0),
      maxAbs: z.number().positive().default(1e-4),
      meanAbs: z.number().positive().default(1e-5),
      /** Throw (code HEIMDALL_ONNX_MISMATCH) when over the thresholds; otherwise only report. */
      throwOnMismatch: z.boolean().default(true),
    }),
  ]).default({ batchSizes: [1, 4], seed: 0, maxAbs: 1e-4, meanAbs: 1e-5, throwOnMismatch: true }),
});
export type ExportOnnxOptions = z.input<typeof exportOnnxOptionsSchema>;

// ---- report ----------------------------------------------------------------------------------------------

export interface OutputDiff {
  maxAbs: number;
  meanAbs: number;
}

export interface OnnxValidation {
  passed: boolean;
  runtime: string;  // "onnxruntime-node 1.30.0"
  thresholds: OutputDiff;
  maxAbs: number;
  meanAbs: number;  // the worst mean over batches and outputs
  batches: { shape: number[]; outputs: Record<string, OutputDiff> }[];
  seconds: number;
}

/** What exportOnnx() reports: the native exporter's facts (less libtorch's raw outputs), the file's hash and the validation. */
export interface OnnxExportReport extends Omit<NativeExportResult, 'libtorch' | 'seconds'> {
  sha256: string;  // of the model file
  exportSeconds: number;
  validation: OnnxValidation | null;
}

/** The codes exportOnnx() throws itself (the addon's own errors arrive as HeimdallErrors with native codes). */
export type OnnxExportErrorCode = 'HEIMDALL_INVALID_ARGUMENT' | 'HEIMDALL_ONNX_MISMATCH';

export class OnnxExportError extends HeimdallError<OnnxExportErrorCode> {
  readonly report?: OnnxExportReport;
  constructor(code: OnnxExportErrorCode, message: string, report?: OnnxExportReport) {
    super(code, message);
    this.name = 'OnnxExportError';
    this.report = report;
  }
}

// ---- the native binding ----------------------------------------------------------------------------------

export type { OnnxBinding } from '../native.js';

let binding: OnnxBinding | null = null;

/** Overrides the binding exportOnnx() uses (default: the addon that lib/native.ts loads), e.g. in tests. */
export function setOnnxBinding(b: OnnxBinding): void {
  binding = b;
}

function defaultBinding(): OnnxBinding {
  binding ??= onnxBinding();  // lib/native.ts: the one place that loads the addon
  return binding;
}

// ---- export + validation ---------------------------------------------------------------------------------

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** What exportOnnx() says when onnxruntime-node is not installed: what needs it, and the way around it. */
const VALIDATION_NEEDS_ORT = ["exportOnnx()'s check of the file against libtorch", 'pass validate: false to export without the check'] as const;

/** Runs the file in ONNX Runtime on libtorch's inputs and compares the outputs. */
export async function validateWithOnnxRuntime(
  path: string, inputName: string, libtorch: NativeExportResult['libtorch'], thresholds: OutputDiff,
): Promise<OnnxValidation> {
  const started = performance.now();
  const ort = await loadOnnxRuntime(...VALIDATION_NEEDS_ORT);
  const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 2, interOpNumThreads: 1 });
  const batches: OnnxValidation['batches'] = [];
  let maxAbs = 0;
  let meanAbs = 0;
  try {
    for (const b of libtorch) {
      const result = await session.run({ [inputName]: new ort.Tensor('float32', b.input, b.shape) });
      const outputs: Record<string, OutputDiff> = {};
      for (const [name, expected] of Object.entries(b.outputs)) {
        const got = result[name];
        if (!got) throw new OnnxExportError('HEIMDALL_ONNX_MISMATCH', `the ONNX model has no output "${name}"`);
        const g = got.data as Float32Array;
        if (got.dims.join(',') !== expected.shape.join(','))
          throw new OnnxExportError('HEIMDALL_ONNX_MISMATCH',
            `output "${name}" has shape [${got.dims.join(', ')}] in ONNX Runtime, [${expected.shape.join(', ')}] in libtorch`);
        let max = 0;
        let sum = 0;
        for (let i = 0; i < g.length; i++) {
          const d = Math.abs(g[i] - expected.data[i]);
          if (!(d <= max)) max = d;  // NaN propagates
          sum += d;
        }
        const mean = g.length ? sum / g.length : 0;
        outputs[name] = { maxAbs: max, meanAbs: mean };
        if (!(max <= maxAbs)) maxAbs = max;
        if (!(mean <= meanAbs)) meanAbs = mean;
      }
      batches.push({ shape: b.shape, outputs });
    }
  } finally {
    await session.release();
  }
  return {
    passed: maxAbs <= thresholds.maxAbs && meanAbs <= thresholds.meanAbs,
    runtime: onnxRuntimeVersion() ?? 'onnxruntime-node',
    thresholds,
    maxAbs,
    meanAbs,
    batches,
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * Exports `source` (a Model, or the path of a safetensors weights / checkpoint file) to `outPath` and, unless
 * `validate: false`, checks the file against libtorch in ONNX Runtime. Errors carry a `code` (HEIMDALL_*).
 */
export async function exportOnnx(source: NativeModel | string, outPath: string, options: ExportOnnxOptions = {}): Promise<OnnxExportReport> {
  const parsed = exportOnnxOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  - ${i.path.join('.') || 'options'}: ${i.message}`);
    throw new OnnxExportError('HEIMDALL_INVALID_ARGUMENT', `Invalid exportOnnx options:\n${lines.join('\n')}`);
  }
  const o = parsed.data;
  const native: Record<string, unknown> = { opset: o.opset, geluOp: o.geluOp, metadata: o.metadata };
  for (const key of ['inputName', 'inputShape', 'externalDataThreshold', 'variant', 'head', 'inChans', 'outputs',
    'sigmaMin', 'sigmaMax'] as const) {
    if (o[key] !== undefined) native[key] = o[key];
  }
  if (o.validate) native.validate = { batchSizes: o.validate.batchSizes, seed: o.validate.seed };
  // Before anything is written: the validation needs onnxruntime-node (an optional peer dependency).
  if (o.validate) requireOnnxRuntime(...VALIDATION_NEEDS_ORT);

  const r = await defaultBinding().exportOnnx(source, outPath, native);
  const { libtorch, seconds, ...facts } = r;
  const report: OnnxExportReport = { ...facts, sha256: await sha256(r.path), exportSeconds: seconds, validation: null };
  if (o.validate) {
    report.validation = await validateWithOnnxRuntime(r.path, r.inputName, libtorch,
      { maxAbs: o.validate.maxAbs, meanAbs: o.validate.meanAbs });
    if (!report.validation.passed && o.validate.throwOnMismatch) {
      throw new OnnxExportError('HEIMDALL_ONNX_MISMATCH',
        `${r.path}: ONNX Runtime and libtorch differ by max |Δ| ${report.validation.maxAbs.toExponential(2)}, mean |Δ| ` +
        `${report.validation.meanAbs.toExponential(2)} (allowed ${o.validate.maxAbs}, ${o.validate.meanAbs})`, report);
    }
  }
  return report;
}

/** One line per fact, for logs and the README's report. */
export function formatOnnxReport(r: OnnxExportReport): string {
  const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
  const lines = [
    `ONNX ${r.path} (${r.variant}, ${r.head} head, opset ${r.opset}, IR ${r.irVersion})`,
    `  input ${r.inputName} [${r.inputShape.map((d) => (d < 0 ? '?' : d)).join(', ')}] → ${r.outputNames.join(', ')}`,
    `  ${r.parameters.toLocaleString('en-US')} weights, ${r.nodes} nodes, ${mb(r.modelBytes)}` +
      (r.dataPath ? ` + ${mb(r.dataBytes)} external data in ${r.dataPath}` : '') + `, exported in ${r.exportSeconds.toFixed(2)} s`,
    `  sha256 ${r.sha256}`,
  ];
  if (r.validation) {
    const v = r.validation;
    lines.push(`  ${v.runtime} vs libtorch on batches ${v.batches.map((b) => b.shape[0]).join(', ')}: max |Δ| ` +
      `${v.maxAbs.toExponential(2)}, mean |Δ| ${v.meanAbs.toExponential(2)} → ${v.passed ? 'PASSED' : 'FAILED'} ` +
      `(limits ${v.thresholds.maxAbs}, ${v.thresholds.meanAbs})`);
  }
  return lines.join('\n');
}
