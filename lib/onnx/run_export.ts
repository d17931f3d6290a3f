// From a tracked run to a registered ONNX model: find the run's checkpoint (its logged checkpoint artifacts,
// fetched through the artifact store, or a local file), export it with the validation report, log the MLflow
// `onnx` flavor folder as the run's `model/` (with the SHA-256 tag), register `runs:/<run_id>/model`, wait
// READY, move it to a stage and set an alias. The library side of `heimdall-torch export`.
import { existsSync, mkdirSync, openSync, readFileSync, readSync, closeSync, fstatSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { HeimdallDataModule } from '../data/heimdall.js';
import { fetchArtifact, joinArtifactUri, listArtifactDir } from '../inference/artifacts.js';
import { badFile, badInput, InferenceError, notFound } from '../inference/errors.js';
import { redact } from '../config.js';
import type { MLflowTracker, RunSummary } from '../tracking/tracker.js';
import type { ModelStage, ModelVersion } from '../tracking/types.js';
import { exportOnnx, type OnnxExportReport } from './export.js';
import { checkpointStep, logOnnxModel, type OnnxModelRun } from './mlflow_model.js';

export const DEFAULT_REGISTERED_MODEL = 'heimdall-localization-onnx';

// ---- checkpoints -----------------------------------------------------------------------------------------

export interface CheckpointHeader {
  path: string;
  bytes: number;
  tensors: number;
  /** safetensors __metadata__ (heimdall.variant, heimdall.head, heimdall.in_chans, heimdall.checkpoint, …). */
  metadata: Record<string, string>;
  variant: string | null;
  head: string | null;
  inChans: number | null;
}

/**
 * Reads and checks a safetensors file's header: a truncated file (shorter than its header says) or a file
 * that is not safetensors at all fails here with HEIMDALL_BAD_FILE naming it.
 */
export function readCheckpointHeader(path: string): CheckpointHeader {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw notFound(`checkpoint ${path} does not exist (${(e as NodeJS.ErrnoException).code})`);
  }
  try {
    const size = fstatSync(fd).size;
    const what = `checkpoint ${path}`;
    if (size < 8) throw badFile(`${what} is truncated or not a safetensors file (${size} bytes)`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const n = Number(lenBuf.readBigUInt64LE(0));
    if (n < 2 || n > 100 * 1024 * 1024) throw badFile(`${what} is not a safetensors file (header length ${n})`);
    if (8 + n > size) throw badFile(`${what} is truncated: its header needs ${8 + n} bytes, the file has ${size}; copy or download it again`);
    const head = Buffer.alloc(n);
    readSync(fd, head, 0, n, 8);
    let json: Record<string, { data_offsets?: [number, number] } | Record<string, string>>;
    try {
      json = JSON.parse(head.toString('utf8')) as typeof json;
    } catch {
      throw badFile(`${what} is not a safetensors file (its header is not JSON)`);
    }
    let end = 0;
    let tensors = 0;
    for (const [k, v] of Object.entries(json)) {
      if (k === '__metadata__') continue;
      tensors++;
      const off = (v as { data_offsets?: [number, number] }).data_offsets;
      if (off && off[1] > end) end = off[1];
    }
    if (8 + n + end > size) {
      throw badFile(`${what} is truncated: its tensors need ${8 + n + end} bytes, the file has ${size}; copy or download it again`);
    }
    const metadata = (json.__metadata__ ?? {}) as Record<string, string>;
    const inChans = metadata['heimdall.in_chans'] ? Number(metadata['heimdall.in_chans']) : null;
    return { path, bytes: size, tensors, metadata, variant: metadata['heimdall.variant'] ?? null, head: metadata['heimdall.head'] ?? null, inChans };
  } finally {
    closeSync(fd);
  }
}

// ---- the run's checkpoint and data ----------------------------------------------------------------------

export interface RunCheckpoint {
  /** Local file (downloaded into a temporary directory for remote stores). */
  path: string;
  /** Where it came from: the artifact URI, or the local path given. */
  source: string;
  kind: 'best' | 'last' | 'file';
  header: CheckpointHeader;
}

async function runOrThrow(tracker: MLflowTracker, runId: string): Promise<RunSummary> {
  if (!/^[0-9a-zA-Z_-]+$/.test(runId)) throw badInput(`'${runId}' is not an MLflow run id`, 'runId');
  try {
    return await tracker.getRunInfo(runId);
  } catch (e) {
    throw notFound(`no run '${runId}' in ${redact(tracker.config.trackingUri)} (${(e as Error).message})`, e, 'runId');
  }
}

/**
 * The checkpoint of a run: 'best' (checkpoints/best, the file the heimdall.best_checkpoint tag names), 'last'
 * (checkpoints/last), or a local file. Remote artifacts are downloaded into `downloadDir`.
 */
export async function findRunCheckpoint(tracker: MLflowTracker, run: RunSummary, which: string, downloadDir: string): Promise<RunCheckpoint> {
  if (which !== 'best' && which !== 'last') {
    const path = resolve(which);
    if (!existsSync(path)) throw notFound(`${which} does not exist (use best, last, or a checkpoint file)`, undefined, 'checkpoint');
    return { path, source: path, kind: 'file', header: readCheckpointHeader(path) };
  }
  const folders = which === 'best' ? ['checkpoints/best', 'checkpoints/last'] : ['checkpoints/last'];
  for (const folder of folders) {
    const uri = joinArtifactUri(run.artifactUri, folder);
    const files = (await listArtifactDir(uri, tracker.config)).filter((e) => !e.isDir && e.path.endsWith('.safetensors'));
    if (!files.length) continue;
    const tagged = run.tags['heimdall.best_checkpoint'];
    const pick = (folder === 'checkpoints/best' && tagged && files.find((f) => f.path === tagged)) || files[files.length - 1]!;
    const fileUri = joinArtifactUri(uri, pick.path);
    const got = await fetchArtifact(fileUri, tracker.config, join(downloadDir, folder.replace('/', '-')));
    return { path: got.localPath, source: fileUri, kind: folder.endsWith('best') ? 'best' : 'last', header: readCheckpointHeader(got.localPath) };
  }
  throw notFound(`run ${run.runId} has no checkpoint artifacts (${folders.join(', ')} under ${run.artifactUri}): ` +
    'train it with checkpoints logged (the MLflowLogger does by default) or give a checkpoint file');
}

/**
 * The data facts the model needs at inference (target normalisation, feature constants, receivers) as the
 * metadata JSON the data sets write: from `dataDir` if given; else the run's `data/metadata.json` artifact
 * (the MLflowLogger logs it); else from the run's `cli/data_dir` param (`synthetic` → the built-in
 * simulator's); else null.
 */
export async function dataMetadataOfRun(run: RunSummary, dataDir?: string,
  artifacts?: { tracker: MLflowTracker; downloadDir: string }): Promise<{ json: string; inputShape: number[]; from: string } | null> {
  if (!dataDir && artifacts) {
    const logged = await loggedDataMetadata(run, artifacts.tracker, artifacts.downloadDir);
    if (logged) return logged;
  }
  const dir = dataDir ?? run.params['cli/data_dir'];
  if (!dir) return null;
  if (dir === 'synthetic' && !dataDir) {
    const seed = Number(run.params['trainer/seed'] ?? 0);
    const d = HeimdallDataModule.synthetic({ samples: 3, seed: Number.isInteger(seed) && seed >= 0 ? seed : 0, cache: false });
    return { json: d.info.metadataJson, inputShape: d.inputShape, from: 'the synthetic data set' };
  }
  const path = isAbsolute(dir) ? dir : resolve(dir);
  if (!existsSync(path)) {
    if (dataDir) throw notFound(`${dataDir} does not exist`, undefined, 'dataDir');
    return null;
  }
  const d = await HeimdallDataModule.fromDirectory(path, { cache: false });
  return { json: d.info.metadataJson, inputShape: d.inputShape, from: path };
}

/** The run's `data/metadata.json` artifact, or null when the run has none (runs from before it was logged). */
async function loggedDataMetadata(run: RunSummary, tracker: MLflowTracker, downloadDir: string): Promise<{ json: string; inputShape: number[]; from: string } | null> {
  const uri = joinArtifactUri(run.artifactUri, 'data/metadata.json');
  const listed = await listArtifactDir(joinArtifactUri(run.artifactUri, 'data'), tracker.config).catch(() => []);
  if (!listed.some((e) => !e.isDir && e.path.endsWith('metadata.json'))) return null;
  const got = await fetchArtifact(uri, tracker.config, join(downloadDir, 'data'));
  const json = readFileSync(got.localPath, 'utf8');
  let meta: { receivers?: unknown[]; features?: { n_mels?: number; frames?: number } };
  try {
    meta = JSON.parse(json);
  } catch (e) {
    throw badFile(`${uri} is not valid JSON (${(e as Error).message}): give the data directory (dataDir) instead`, e);
  }
  const chans = meta.receivers?.length, mels = meta.features?.n_mels, frames = meta.features?.frames;
  if (!chans || !mels || !frames) throw badFile(`${uri} lacks receivers or features.n_mels/frames: give the data directory (dataDir) instead`);
  return { json, inputShape: [chans, mels, frames], from: uri };
}

// ---- export + log + register ----------------------------------------------------------------------------

export interface ExportRunOptions {
  checkpoint?: 'best' | 'last' | string;
  /** Where the .onnx and the MLflow model folder are written (default: a temporary directory, removed). */
  outputDir?: string;
  opset?: number;
  /** Data directory the run was trained on, for the target normalisation (default: what the run records). */
  dataDir?: string;
  /** Log `model/` into the run (default true). */
  logModel?: boolean;
  /** Register the logged model under this name (default: no registration). */
  register?: string;
  description?: string;
  tags?: Record<string, string>;
  stage?: ModelStage;
  archiveExisting?: boolean;
  alias?: string;
  /** Called with progress lines. */
  log?: (line: string) => void;
}

export interface ExportRunResult {
  runId: string;
  checkpoint: RunCheckpoint;
  report: OnnxExportReport;
  /** `models:/<model_id>` (an MLflow 3 logged model), or `runs:/<run_id>/model` on an MLflow 2.x store; once logged. */
  modelUri: string | null;
  /** `runs:/<run_id>/model` (resolves to the logged model too), once logged. */
  runModelUri: string | null;
  /** The logged model's id, null when not logged or on an MLflow 2.x store. */
  modelId: string | null;
  registered: ModelVersion | null;
  /** models:/<name>/<version> (or @alias / stage) to load it by. */
  registeredUri: string | null;
  dataFrom: string;
  outputDir: string | null;
}

/**
 * Registers the run's model as a new version of `name`, waits READY, then moves it to `stage` and sets `alias`.
 * `modelUri`: what to register — `models:/<model_id>` (a logged model: the version's source, with its model_id,
 * as MLflow 3 registers) or default `runs:/<runId>/<artifactPath ?? 'model'>` (resolved to the run's logged model
 * of that name where there is one).
 */
export async function registerOnnxModel(
  tracker: MLflowTracker, runId: string,
  opts: { name?: string; description?: string; tags?: Record<string, string>; stage?: ModelStage; archiveExisting?: boolean; alias?: string; artifactPath?: string; modelUri?: string },
): Promise<ModelVersion> {
  const name = opts.name ?? DEFAULT_REGISTERED_MODEL;
  let mv = await tracker.registerModel(name, opts.modelUri ?? `runs:/${runId}/${opts.artifactPath ?? 'model'}`, {
    description: opts.description ?? `heimdall-torch ONNX export of run ${runId}`,
    tags: opts.tags,
  });
  if (opts.stage && opts.stage !== 'None') mv = await tracker.transitionModelStage(name, mv.version, opts.stage, { archiveExisting: opts.archiveExisting });
  if (opts.alias) {
    await tracker.setModelAlias(name, opts.alias, mv.version);
    mv = await tracker.getModelVersion(name, mv.version);
  }
  return mv;
}

/**
 * Exports a run's checkpoint to ONNX (validated against libtorch in ONNX Runtime), logs it as the run's
 * `model/` (MLflow onnx flavor, tag heimdall.onnx_sha256) and optionally registers it. `tracker` must have no
 * active run of its own.
 */
export async function exportRun(tracker: MLflowTracker, runId: string, opts: ExportRunOptions = {}): Promise<ExportRunResult> {
  const log = opts.log ?? (() => {});
  if (opts.register !== undefined && !opts.register.trim()) throw badInput('the registered model name is empty', 'register');
  if (opts.alias !== undefined && !/^[A-Za-z0-9_-]+$/.test(opts.alias)) throw badInput(`'${opts.alias}' must be letters, digits, _ or -`, 'alias');
  if (/^v\d+$/i.test(opts.alias ?? '') || opts.alias === 'latest') throw badInput(`'${opts.alias}' is reserved by MLflow`, 'alias');
  const run = await runOrThrow(tracker, runId);
  const work = await mkdtemp(join(tmpdir(), 'heimdall-export-'));
  try {
    const ckpt = await findRunCheckpoint(tracker, run, opts.checkpoint ?? 'best', work);
    log(`checkpoint ${ckpt.source} (${ckpt.kind}, ${ckpt.header.variant ?? '?'} ${ckpt.header.head ?? '?'} head, ${(ckpt.header.bytes / 1e6).toFixed(1)} MB)`);
    const runVariant = run.params['model/variant'];
    const runHead = run.params['model/head'];
    const runChans = run.params['model/in_chans'];
    if (!ckpt.header.variant || !ckpt.header.head) {
      throw badFile(`checkpoint ${ckpt.source} has no heimdall.variant / heimdall.head metadata: it was not written by heimdall-torch`);
    }
    if ((runVariant && ckpt.header.variant !== runVariant) || (runHead && ckpt.header.head !== runHead) ||
        (runChans && ckpt.header.inChans !== null && String(ckpt.header.inChans) !== runChans)) {
      throw new InferenceError('HEIMDALL_WEIGHTS_MISMATCH',
        `checkpoint ${ckpt.source} holds a ${ckpt.header.variant} ${ckpt.header.head} model with ${ckpt.header.inChans} input channels, ` +
        `but run ${runId} trained ${runVariant ?? '?'} ${runHead ?? '?'} with ${runChans ?? '?'}: pass that run's own checkpoint`);
    }
    if (ckpt.header.head !== 'localization') {
      throw new InferenceError('HEIMDALL_WEIGHTS_MISMATCH',
        `checkpoint ${ckpt.source} has a ${ckpt.header.head} head; export/predict serve localization models (positions + uncertainties)`);
    }
    const data = await dataMetadataOfRun(run, opts.dataDir, { tracker, downloadDir: work });
    if (!data) {
      throw notFound(`run ${runId} was trained on '${run.params['cli/data_dir'] ?? '(not recorded)'}', which is not here: ` +
        'give the data directory so the export records its target normalisation', undefined, 'dataDir');
    }
    if (ckpt.header.inChans !== null && data.inputShape[0] !== ckpt.header.inChans) {
      throw new InferenceError('HEIMDALL_SHAPE_MISMATCH',
        `the data (${data.from}) has ${data.inputShape[0]} receivers, checkpoint ${ckpt.source} takes ${ckpt.header.inChans} input channels`);
    }
    const outDir = opts.outputDir ? resolve(opts.outputDir) : join(work, 'out');
    mkdirSync(outDir, { recursive: true });
    const report = await exportOnnx(ckpt.path, join(outDir, 'model.onnx'), {
      ...(opts.opset ? { opset: opts.opset } : {}),
      inputShape: data.inputShape as [number, number, number],
      metadata: { 'heimdall.data': data.json, 'heimdall.run_id': runId, 'heimdall.checkpoint': ckpt.source },
    });
    const result: ExportRunResult = {
      runId, checkpoint: ckpt, report, modelUri: null, runModelUri: null, modelId: null, registered: null, registeredUri: null, dataFrom: data.from,
      outputDir: opts.outputDir ? outDir : null,
    };
    if (opts.logModel === false && !opts.register) return result;

    const status = run.status === 'RUNNING' || run.status === 'SCHEDULED' ? 'FINISHED' : run.status;
    const modelRun: OnnxModelRun = {
      runId,
      async logArtifact(dir, artifactPath, tags) {
        await tracker.startRun({ runId });
        tracker.logArtifacts(dir, artifactPath);
        tracker.setTags(tags);
        const flushed = await tracker.endRun(status);
        if (!flushed.complete || flushed.errors.length) {
          throw new InferenceError('HEIMDALL_NOT_FOUND', `logging ${artifactPath}/ into run ${runId} did not complete: ${flushed.errors.join('; ') || 'backend unavailable'}`);
        }
      },
      async logModel(write, logOpts, tags) {
        await tracker.startRun({ runId });
        let logged: Awaited<ReturnType<MLflowTracker['logModel']>> | undefined;
        let failure: unknown;
        try {
          logged = await tracker.logModel(write, logOpts);
          tracker.setTags(tags);
        } catch (e) {
          failure = e;
        }
        const flushed = await tracker.endRun(status);  // the run ends as it was, also after a failure
        if (failure !== undefined) throw failure;
        if (!flushed.complete || flushed.errors.length) {
          throw new InferenceError('HEIMDALL_NOT_FOUND', `logging the model into run ${runId} did not complete: ${flushed.errors.join('; ') || 'backend unavailable'}`);
        }
        return logged!;
      },
    };
    const logged = await logOnnxModel(report, join(outDir, 'mlflow-model'), modelRun, ckpt.source, checkpointStep(ckpt.header.metadata) ?? 0);
    Object.assign(result, logged);
    log(`logged ${result.modelUri}${logged.modelId ? ` (MLflow logged model of run ${runId}, also ${logged.runModelUri})` : ''} (MLflow onnx flavor), sha256 ${report.sha256}`);
    if (opts.register) {
      const mv = await registerOnnxModel(tracker, runId, {
        name: opts.register, modelUri: result.modelUri ?? undefined, description: opts.description, stage: opts.stage, archiveExisting: opts.archiveExisting, alias: opts.alias,
        tags: {
          'heimdall.variant': report.variant, 'heimdall.onnx_sha256': report.sha256, 'heimdall.opset': String(report.opset),
          'heimdall.checkpoint': ckpt.kind, ...(report.validation ? { 'heimdall.validation_max_abs': report.validation.maxAbs.toExponential(3) } : {}),
          ...(opts.tags ?? {}),
        },
      });
      result.registered = mv;
      result.registeredUri = opts.alias ? `models:/${mv.name}@${opts.alias}` : `models:/${mv.name}/${mv.version}`;
    }
    return result;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
