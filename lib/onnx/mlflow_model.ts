// An MLflow model directory of the `onnx` flavor (plus `python_function`) around an exported file, as
// `mlflow.onnx.save_model` lays it out: MLmodel, the .onnx file (and its external data), conda.yaml,
// python_env.yaml, requirements.txt. Logged as the run's `model/` artifact, it loads with
// `mlflow.onnx.load_model('runs:/<id>/model')` and `mlflow.pyfunc.load_model(...)`, and registers as a model version.
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { LoggedModelResult, LogModelOptions } from '../tracking/logged_models.js';
import type { OnnxExportReport } from './export.js';

/** The MLmodel format written is the one of this MLflow release (the project's pinned Python MLflow). */
export const MLMODEL_MLFLOW_VERSION = '3.17.2';

export interface MlflowOnnxModelOptions {
  runId?: string;
  /** `artifact_path` of MLmodel: the run path ('model'), or a logged model's artifact location. */
  artifactPath?: string;
  /** The MLflow 3 logged model this folder is (`model_id`, also its `model_uuid`, as Python's log_model writes). */
  modelId?: string;
  pythonVersion?: string;  // recorded for python_function; default '3.11'
  /** Pip requirements of the pyfunc environment. */
  requirements?: string[];
}

export interface MlflowOnnxModel {
  dir: string;
  files: string[];
  modelFile: string;  // the .onnx file's name inside dir
  mlmodel: string;    // the MLmodel text
}

/** One MLflow tensor spec per input/output ("-1" marks the batch and any symbolic dim). */
function tensorSpec(name: string, shape: number[]): Record<string, unknown> {
  return { name, type: 'tensor', 'tensor-spec': { dtype: 'float32', shape } };
}

function outputWidth(report: OnnxExportReport): number {
  if (report.head === 'localization') return 2;
  const n = Number(report.metadata['heimdall.outputs']);
  return Number.isFinite(n) && n > 0 ? n : -1;
}

/** The first release of the onnx package that reads this opset (MLflow records the onnx version; it does not read it). */
function minimumOnnxVersion(opset: number): string {
  return `1.${Math.min(Math.max(opset - 5, 12), 18)}.0`;  // opset 17 → onnx 1.12, 20 → 1.15, 23 → 1.18
}

// JSON strings are valid YAML scalars: use them for every value that could need quoting.
const q = (s: string) => JSON.stringify(s);

function utcCreated(d = new Date()): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:` +
    `${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}000`;
}

/** The run tags logged with a run's `model/`: the ONNX file's SHA-256 and the checkpoint it was exported from. */
export function onnxModelTags(report: OnnxExportReport, checkpoint: string): Record<string, string> {
  return { 'heimdall.onnx_sha256': report.sha256, 'heimdall.onnx_checkpoint': checkpoint.slice(0, 5000) };
}

/**
 * The logged model's description (its `mlflow.note.content` tag, which the model page shows): what was exported
 * from which checkpoint, its input and outputs, and how it compared with libtorch.
 */
export function onnxModelDescription(report: OnnxExportReport, checkpoint: string, step: number): string {
  const shape = report.inputShape.map((d, i) => (d < 0 ? (i === 0 ? 'batch' : '?') : String(d))).join(', ');
  const v = report.validation;
  const check = v
    ? `Checked against libtorch in ${v.runtime}: max |Δ| ${v.maxAbs.toExponential(2)}, mean ${v.meanAbs.toExponential(2)} → ${v.passed ? 'passed' : 'FAILED'} (limits ${v.thresholds.maxAbs}, ${v.thresholds.meanAbs}).`
    : 'Not checked against libtorch at export (validate: false).';
  return `ONNX export (opset ${report.opset}, IR ${report.irVersion}) of ${report.variant} with a ${report.head} head, ` +
    `${report.parameters.toLocaleString('en-US')} weights, from the checkpoint ${basename(checkpoint)} (step ${step}). ` +
    `Input ${report.inputName} [${shape}] → ${report.outputNames.join(', ')}. ${check}`;
}

/** Writes the MLflow model directory `dir` for the ONNX file of `report` (copied in with its external data). */
export function writeMlflowOnnxModel(report: OnnxExportReport, dir: string, options: MlflowOnnxModelOptions = {}): MlflowOnnxModel {
  mkdirSync(dir, { recursive: true });
  const modelFile = basename(report.path);
  copyFileSync(report.path, join(dir, modelFile));
  const files = [modelFile];
  let size = statSync(report.path).size;
  if (report.dataPath) {
    // The model names its side file by a path relative to itself: keep the name.
    const dataFile = basename(report.dataPath);
    copyFileSync(report.dataPath, join(dir, dataFile));
    files.push(dataFile);
    size += statSync(report.dataPath).size;
  }
  const python = options.pythonVersion ?? '3.11';
  const requirements = options.requirements ?? [`mlflow==${MLMODEL_MLFLOW_VERSION}`, 'numpy', 'onnx', 'onnxruntime'];
  const width = outputWidth(report);
  const inputs = JSON.stringify([tensorSpec(report.inputName, report.inputShape)]);
  const outputs = JSON.stringify(report.outputNames.map((n) => tensorSpec(n, [-1, width])));

  const lines = [
    ...(options.artifactPath !== undefined || options.runId ? [`artifact_path: ${q(options.artifactPath ?? 'model')}`] : []),
    'flavors:',
    '  onnx:',
    '    code: null',
    `    data: ${q(modelFile)}`,
    '    onnx_session_options: null',
    `    onnx_version: ${q(minimumOnnxVersion(report.opset))}`,
    '    providers:',
    '    - CPUExecutionProvider',
    '  python_function:',
    `    data: ${q(modelFile)}`,
    '    env:',
    '      conda: conda.yaml',
    '      virtualenv: python_env.yaml',
    '    loader_module: mlflow.onnx',
    `    python_version: ${q(python)}`,
    `mlflow_version: ${q(MLMODEL_MLFLOW_VERSION)}`,
    ...(options.modelId ? [`model_id: ${q(options.modelId)}`] : []),
    `model_size_bytes: ${size}`,
    `model_uuid: ${q(options.modelId ?? randomUUID().replace(/-/g, ''))}`,
    ...(options.runId ? [`run_id: ${q(options.runId)}`] : []),
    'signature:',
    `  inputs: ${q(inputs)}`,
    `  outputs: ${q(outputs)}`,
    '  params: null',
    `utc_time_created: ${q(utcCreated())}`,
    'metadata:',
    ...Object.entries(report.metadata).map(([k, v]) => `  ${q(k)}: ${q(v)}`),
    `  ${q('heimdall.onnx_sha256')}: ${q(report.sha256)}`,
    '',
  ];
  const mlmodel = lines.join('\n');
  writeFileSync(join(dir, 'MLmodel'), mlmodel);
  writeFileSync(join(dir, 'requirements.txt'), requirements.join('\n') + '\n');
  writeFileSync(join(dir, 'python_env.yaml'),
    [`python: ${q(python)}`, 'build_dependencies:', '- pip', '- setuptools', '- wheel', 'dependencies:', '- -r requirements.txt', ''].join('\n'));
  writeFileSync(join(dir, 'conda.yaml'),
    ['channels:', '- conda-forge', 'dependencies:', `- python=${python}`, '- pip', '- pip:',
      ...requirements.map((r) => `  - ${r}`), 'name: mlflow-env', ''].join('\n'));
  files.push('MLmodel', 'requirements.txt', 'python_env.yaml', 'conda.yaml');
  return { dir, files, modelFile, mlmodel };
}

/** Where logOnnxModel() logs: a run (the MLflowLogger's, or a tracker's reopened one). */
export interface OnnxModelRun {
  readonly runId: string | null;
  /** Logs the folder `dir` under `artifactPath` of the run and sets `tags` on it. */
  logArtifact(dir: string, artifactPath: string, tags: Record<string, string>): Promise<void>;
  /**
   * Logs the folder that `write` makes as an MLflow 3 logged model of the run (MLflowTracker.logModel), sets the
   * run `tags`; absent: the folder is logged as the run's artifact (logArtifact).
   */
  logModel?(write: (model: { modelId: string | null; artifactLocation: string }) => string, opts: LogModelOptions, tags: Record<string, string>): Promise<LoggedModelResult>;
}

export interface LoggedOnnxModel {
  /** `models:/<model_id>` when it is a logged model, else `runs:/<run_id>/model`. */
  modelUri: string;
  /** `runs:/<run_id>/model` (resolves to the logged model on MLflow 3 stores). */
  runModelUri: string;
  modelId: string | null;
}

/** The step a checkpoint was saved at (its `heimdall.checkpoint` metadata), or null. */
export function checkpointStep(metadata: Record<string, string> | undefined): number | null {
  try {
    const step = (JSON.parse(metadata?.['heimdall.checkpoint'] ?? 'null') as { step?: unknown } | null)?.step;
    return typeof step === 'number' && Number.isSafeInteger(step) && step >= 0 ? step : null;
  } catch {
    return null;
  }
}

/**
 * Writes the MLflow `onnx` flavor folder for `report` into `dir` (emptied first) and logs it — as an MLflow 3
 * logged model named `model` (artifacts under the model's own location, MLmodel with `model_id`, linked to the
 * run as its output at `step`, with the run's metrics at that step) where the run's store has logged models, else
 * as the run's `model/` — tagging the run with the file's SHA-256 and the checkpoint it came from.
 */
export async function logOnnxModel(report: OnnxExportReport, dir: string, run: OnnxModelRun, checkpoint: string, step = 0): Promise<LoggedOnnxModel> {
  const tags = onnxModelTags(report, checkpoint);
  const runModelUri = `runs:/${run.runId}/model`;
  if (!run.logModel) {
    rmSync(dir, { recursive: true, force: true });
    writeMlflowOnnxModel(report, dir, { runId: run.runId ?? undefined });
    await run.logArtifact(dir, 'model', tags);
    return { modelUri: runModelUri, runModelUri, modelId: null };
  }
  const write = (model: { modelId: string | null; artifactLocation: string }): string => {
    rmSync(dir, { recursive: true, force: true });
    writeMlflowOnnxModel(report, dir, model.modelId
      ? { runId: run.runId ?? undefined, modelId: model.modelId, artifactPath: model.artifactLocation }
      : { runId: run.runId ?? undefined });
    return dir;
  };
  const r = await run.logModel(write, {
    name: 'model', step,
    tags: {
      'heimdall.variant': report.variant, 'heimdall.head': report.head, 'heimdall.opset': String(report.opset), ...tags,
      'mlflow.note.content': onnxModelDescription(report, checkpoint, step),
    },
  }, tags);
  return { modelUri: r.modelUri, runModelUri: r.runModelUri, modelId: r.modelId };
}
