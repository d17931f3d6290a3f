// MLflowTracker: the training side's view of MLflow, a facade over
//   worker_client.ts  the worker thread and the typed protocol (protocol.ts) spoken with it,
//   outbox.ts         what is logged but not yet handed to the worker,
//   queries.ts        reading runs back,  registry.ts  the model registry,
//   process_hooks.ts  ending the runs when the process is interrupted, crashes or just ends.
// This file holds experiments and runs, logging (validate, enqueue, return: no I/O, no await), and flush/close.
// `flush()`/`close()` are the only calls that wait on logging I/O; queries and registry calls are promises
// answered by the worker.
import { statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { basename, resolve } from 'node:path';
import { loadTrackerConfig, redact, trackerConfigSchema, type LoadOptions, type TrackerConfig, type TrackerConfigInput } from '../config.js';
import { invalidParameter, MlflowError } from './errors.js';
import { LoggedModels, type LoggedModelResult, type LogModelOptions } from './logged_models.js';
import { Outbox } from './outbox.js';
import { unwatchTracker, watchTracker } from './process_hooks.js';
import { emptyFlushReport, type FlushReport } from './protocol.js';
import { RunQueries, type BestRun, type RunSummary } from './queries.js';
import { ModelRegistry, redactTagValue, type RegisterModelOptions } from './registry.js';
import type { PendingCounts } from './spool.js';
import { validateDatasetInputs, type DatasetInput } from './datasets.js';
import type { Experiment, LoggedModel, Metric, ModelStage, ModelVersion, RegisteredModel, Run, RunStatus, SearchRunsOptions, Tag } from './types.js';
import { flattenParams, metricTimestamp, paramValueToString, validateArtifactPath, validateKey, validateParam, validateTag } from './validation.js';
import { WorkerClient } from './worker_client.js';

export type { BestRun, RunSummary } from './queries.js';
export type { LoggedModelResult, LogModelOptions } from './logged_models.js';

/**
 * The experiment's kind (mlflow/server/js reads `mlflow.experimentKind`; `custom_model_development` is model
 * training). UIs without the "GenAI | Model training" switch pick the view by it; 3.17's UI follows the switch
 * (URL `?workflowType=machine_learning`, else the browser's last choice).
 */
export const EXPERIMENT_KIND_TAG = 'mlflow.experimentKind';
export const TRAINING_EXPERIMENT_KIND = 'custom_model_development';

export interface MLflowTrackerOptions extends TrackerConfigInput {
  /** Tags merged into every run's tags (over the defaults: phase, service). */
  defaultTags?: Record<string, string>;
  /** Where to read `.env` from (default ./.env if present; false to skip). */
  dotenvPath?: string | false;
  /** Environment to read instead of process.env (tests). */
  env?: Record<string, string | undefined>;
}

export interface StartRunOptions {
  runName?: string;
  tags?: Record<string, string>;
  /** Resume this existing run instead of creating one. */
  runId?: string;
  /** Experiment to start the run in (default: the configured experiment). */
  experimentId?: string;
  description?: string;
  /**
   * Log system metrics (CPU, memory, disk, network, GPU; system_metrics.ts) from the worker thread while the run
   * is active, as `mlflow.start_run(log_system_metrics=True)`. Default: `enableSystemMetricsLogging`
   * (MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING, off).
   */
  logSystemMetrics?: boolean;
  /** The node name in this run's system metric keys (`system/<node>/…`; default: systemMetricsNodeId). */
  systemMetricsNodeId?: string;
}

export interface CloseReport extends FlushReport {
  /** How the run was ended (null when no run was open). */
  runStatus: RunStatus | null;
  message: string;
}

/**
 * Tags every run gets (a caller's `defaultTags` and `startRun({ tags })` add to or override them). What model
 * a run trains is the caller's to say (the Trainer tags the run with its model).
 */
export const DEFAULT_RUN_TAGS: Readonly<Record<string, string>> = { phase: 'training', service: 'training' };

interface ActiveRun { runId: string; artifactUri: string; experimentId: string }

export class MLflowTracker {
  readonly config: TrackerConfig;
  readonly defaultTags: Record<string, string>;
  readonly warnings: string[] = [];
  private readonly client: WorkerClient;
  private readonly outbox: Outbox;
  private readonly queries: RunQueries;
  private readonly registry: ModelRegistry;
  private readonly models: LoggedModels;
  private experimentIdValue: string | null = null;
  private run: ActiveRun | null = null;
  private runEnded = false;
  private loggedParams = new Map<string, string>();
  private keyCache = new Set<string>();
  private closing: Promise<CloseReport> | null = null;
  private systemMetricsOn = false;
  private closed = false;

  constructor(options: MLflowTrackerOptions = {}) {
    const { defaultTags, dotenvPath, env, ...cfg } = options;
    const load: LoadOptions = { dotenvPath, env };
    this.config = loadTrackerConfig(cfg, load);
    this.defaultTags = { ...DEFAULT_RUN_TAGS, ...(defaultTags ?? {}) };
    this.client = new WorkerClient(this.config, {
      started: () => watchTracker(this),
      gone: () => unwatchTracker(this),
      warning: (message) => this.warn(message),
    });
    this.outbox = new Outbox(this.client);
    const beforeRead = () => this.flushIfPending();
    this.queries = new RunQueries(this.client, beforeRead, async () => this.experimentIdValue ?? (await this.getOrCreateExperiment()));
    this.registry = new ModelRegistry(this.client, beforeRead);
    this.models = new LoggedModels({
      client: this.client, beforeRead, warn: (m) => this.warn(m), flush: () => this.flush(),
      uploadDir: (local, root, path) => this.outbox.add({ k: 'art', runId: this.requireRun().runId, root, local: resolve(local), path: validateArtifactPath(path), dir: true }),
    });
  }

  get handlesSignals(): boolean {
    return this.config.handleSignals;
  }
  get runId(): string | null {
    return this.run?.runId ?? null;
  }
  get experimentId(): string | null {
    return this.experimentIdValue;
  }
  get artifactUri(): string | null {
    return this.run?.artifactUri ?? null;
  }
  /** True while a run is open or operations are not delivered. */
  get needsClose(): boolean {
    return !this.closed && !this.closing && ((this.run !== null && !this.runEnded) || this.outbox.pending);
  }

  /** Starts the worker and opens the store (schema check/creation). Called by the first call that needs it. */
  start(): Promise<void> {
    if (this.closed && !this.client.started) return Promise.reject(new MlflowError('this MLflowTracker is closed', 'INVALID_STATE'));
    return this.client.start();
  }

  private warn(message: string): void {
    this.warnings.push(message);
    if (this.warnings.length > 1000) this.warnings.splice(0, 500);
  }

  // -------------------------------------------------------------------------------------------------------
  // Experiments and runs
  // -------------------------------------------------------------------------------------------------------
  /** Gets or creates an experiment by name (default: the configured one) with the configured artifact location. */
  async getOrCreateExperiment(name = this.config.experimentName, opts: { artifactLocation?: string; tags?: Record<string, string> } = {}): Promise<string> {
    const existing = await this.client.request('getExperimentByName', name);
    if (existing) {
      if (existing.lifecycleStage !== 'active') throw invalidParameter(`Experiment '${name}' is deleted: restore it or use another name`);
      return existing.experimentId;
    }
    // Experiments this package creates open in MLflow's model-training view (a caller's tag wins).
    const tags = Object.entries({ [EXPERIMENT_KIND_TAG]: TRAINING_EXPERIMENT_KIND, ...(opts.tags ?? {}) }).map(([key, value]) => validateTag(key, redact(value)));
    try {
      return await this.client.request('createExperiment', name, opts.artifactLocation ?? this.config.artifactUri, tags);
    } catch (e) {
      if (e instanceof MlflowError && e.code === 'RESOURCE_ALREADY_EXISTS') {
        const again = await this.client.request('getExperimentByName', name);
        if (again) return again.experimentId;
      }
      throw e;
    }
  }

  async getExperiment(experimentId: string): Promise<Experiment> {
    return this.client.request('getExperiment', experimentId);
  }
  async getExperimentByName(name: string): Promise<Experiment | null> {
    return this.client.request('getExperimentByName', name);
  }
  async searchExperiments(filter?: string, maxResults?: number): Promise<Experiment[]> {
    return this.client.request('searchExperiments', filter, maxResults);
  }

  /** Starts a run (or resumes `runId`) in the configured experiment; returns its id. */
  async startRun(opts: StartRunOptions = {}): Promise<string> {
    if (this.run && !this.runEnded) throw new MlflowError(`Run ${this.run.runId} is still active: endRun() it first`, 'INVALID_STATE');
    const nodeId = parseNodeId('startRun: systemMetricsNodeId', opts.systemMetricsNodeId);
    await this.start();
    await this.monitorSystemMetrics(null);  // one monitor per tracker: its own run's, from here
    if (opts.runId) {
      const run = await this.client.request('getRun', opts.runId);
      if (run.info.lifecycleStage !== 'active') throw invalidParameter(`Run ${opts.runId} is deleted`);
      if (run.info.status !== 'RUNNING') await this.client.request('updateRun', opts.runId, 'RUNNING', null);
      this.run = { runId: run.info.runId, artifactUri: run.info.artifactUri, experimentId: run.info.experimentId };
      this.experimentIdValue = run.info.experimentId;
      this.runEnded = false;
      this.loggedParams = new Map(Object.entries(run.params));
      if (opts.tags) this.setTags(opts.tags);
      this.switchSystemMetrics(run.info.runId, opts.logSystemMetrics, true, nodeId);
      return run.info.runId;
    }
    const experimentId = opts.experimentId ?? this.experimentIdValue ?? (await this.getOrCreateExperiment());
    this.experimentIdValue = experimentId;
    const user = safeUser();
    const merged: Record<string, string> = {
      ...this.defaultTags,
      'mlflow.user': user,
      'mlflow.source.name': process.argv[1] ? basename(process.argv[1]) : 'node',
      'mlflow.source.type': 'LOCAL',
      ...(opts.tags ?? {}),
    };
    if (opts.description) merged['mlflow.note.content'] = opts.description;
    const tags: Tag[] = Object.entries(merged).map(([k, v]) => validateTag(k, redactTagValue(k, v), (w) => this.warnings.push(w)));
    const info = await this.client.request('createRun', { experimentId, runName: opts.runName, startTime: Date.now(), userId: user, tags });
    this.run = { runId: info.runId, artifactUri: info.artifactUri, experimentId: info.experimentId };
    this.runEnded = false;
    this.loggedParams = new Map();
    this.switchSystemMetrics(info.runId, opts.logSystemMetrics, false, nodeId);
    return info.runId;
  }

  /** Ends the active run (FINISHED, FAILED or KILLED) after everything logged to it; waits for delivery. */
  async endRun(status: RunStatus = 'FINISHED', opts: { timeoutMs?: number } = {}): Promise<FlushReport> {
    if (!['FINISHED', 'FAILED', 'KILLED'].includes(status)) throw invalidParameter(`endRun: status must be FINISHED, FAILED or KILLED, got ${status}`);
    this.endActiveRun(this.requireRun(), status);
    return this.flush(opts);
  }

  private endActiveRun(run: ActiveRun, status: RunStatus): void {
    // The monitor stops first (this message overtakes the buffered end): no system metrics after the run's end.
    if (this.systemMetricsOn) this.client.control({ t: 'sysmetrics', runId: null, resume: false });
    this.systemMetricsOn = false;
    this.outbox.add({ k: 'end', runId: run.runId, status, endTime: Date.now() });
    this.runEnded = true;
  }

  private requireRun(): ActiveRun {
    if (!this.run || this.runEnded) throw new MlflowError('No active run: call startRun() first', 'INVALID_STATE');
    return this.run;
  }

  private requireRunId(): string {
    if (!this.run) throw new MlflowError('No run: pass a run id or call startRun() first', 'INVALID_STATE');
    return this.run.runId;
  }

  // -------------------------------------------------------------------------------------------------------
  // Logging: validate, enqueue, return. Never awaits, never throws for a backend problem.
  // -------------------------------------------------------------------------------------------------------
  /**
   * Logs one metric point (timestamp now, step default 0). A bad point (value not a number, fractional step,
   * negative or non-finite timestamp) throws here; a fractional timestamp is truncated to whole ms.
   */
  logMetric(key: string, value: number, step = 0, timestamp = Date.now()): void {
    const run = this.requireRun();
    const p = this.checkMetric(key, value, step, timestamp);
    this.outbox.addMetric(run.runId, key, value, step, p);
    this.outbox.sendSoon();
  }

  /** Logs several metrics at one step (timestamp now). A refused call enqueues nothing. */
  logMetrics(metrics: Record<string, number>, step = 0, timestamp = Date.now()): void {
    const run = this.requireRun();
    // Validate all first: a refused call enqueues nothing.
    let ts = timestamp;
    for (const key in metrics) ts = this.checkMetric(key, metrics[key], step, timestamp);
    for (const key in metrics) this.outbox.addMetric(run.runId, key, metrics[key]!, step, ts);
    this.outbox.sendSoon();
  }

  /** validateMetric() without re-validating a key seen before (the hot path); returns the normalised timestamp. */
  private checkMetric(key: string, value: unknown, step: unknown, timestamp: unknown): number {
    this.checkMetricKey(key);
    if (typeof value !== 'number') throw invalidParameter(`Metric '${key}': value must be a number, got ${typeof value}`);
    if (typeof step !== 'number' || !Number.isSafeInteger(step)) throw invalidParameter(`Metric '${key}': step must be an integer, got ${String(step)}`);
    return metricTimestamp(key, timestamp);
  }

  private checkMetricKey(key: string): void {
    if (!this.keyCache.has(key)) { validateKey('metric', key); this.keyCache.add(key); }
  }

  /** Logs params: nested objects flattened with '/', arrays and objects as JSON. Re-logging another value throws. */
  logParams(params: Record<string, unknown>): void {
    const run = this.requireRun();
    const flat = flattenParams(params);
    const checked: [string, string][] = [];
    const conflicts: string[] = [];
    for (const [k, raw] of Object.entries(flat)) {
      const p = validateParam(k, redactTagValue(k, raw), (w) => this.warnings.push(w));
      const prev = this.loggedParams.get(p.key);
      if (prev !== undefined && prev !== p.value) conflicts.push(`'${p.key}' (logged '${prev}', now '${p.value}')`);
      checked.push([p.key, p.value]);
    }
    if (conflicts.length) {
      throw invalidParameter(`Changing param values is not allowed: ${conflicts.join(', ')} for run ID='${run.runId}'. Use a new run (or another key).`);
    }
    const fresh: [string, string][] = [];
    for (const [k, v] of checked) {
      if (this.loggedParams.has(k)) continue; // same value: nothing to send
      this.loggedParams.set(k, v);
      fresh.push([k, v]);
    }
    this.outbox.addParamsAndTags(run.runId, fresh, []);
    this.outbox.sendSoon();
  }

  logParam(key: string, value: unknown): void {
    this.logParams({ [key]: value });
  }

  /** Sets run tags (values redacted of secrets). */
  setTags(tags: Record<string, unknown>): void {
    const run = this.requireRun();
    const checked = Object.entries(tags).map(([k, v]) => validateTag(k, redactTagValue(k, paramValueToString(v)), (w) => this.warnings.push(w)));
    this.outbox.addParamsAndTags(run.runId, [], checked.map((t): [string, string] => [t.key, t.value]));
    this.outbox.sendSoon();
  }

  setTag(key: string, value: unknown): void {
    this.setTags({ [key]: value });
  }

  /**
   * Logs datasets the run used, as `mlflow.log_input` (a `datasets` row per name and digest of the experiment,
   * reused when it exists; an input with its tags, e.g. `mlflow.data.context: training`). Only enqueues;
   * a store without the dataset tables (MLflow < 2.4) skips them with one warning.
   */
  logInputs(datasets: DatasetInput[]): void {
    const run = this.requireRun();
    validateDatasetInputs(datasets);
    if (!datasets.length) return;
    this.outbox.add({ k: 'inp', runId: run.runId, datasets: datasets.map((d) => ({ dataset: { ...d.dataset }, tags: d.tags.map((t) => ({ key: t.key, value: t.value })) })) });
  }

  /** True while the active run logs system metrics. */
  get logsSystemMetrics(): boolean {
    return this.systemMetricsOn;
  }

  /**
   * Logs this machine's system metrics to `runId`, a run another process owns (the run of rank 0 of a multi-node
   * job, seen from another node), under `system/<nodeId>/…` (default: systemMetricsNodeId), until called with null
   * or close(). The run itself is not touched: no status change, no end. Refused while this tracker has a run of its own.
   */
  async monitorSystemMetrics(runId: string | null, opts: { nodeId?: string } = {}): Promise<void> {
    if (runId === null) {
      if (this.monitoredRun) this.client.control({ t: 'sysmetrics', runId: null, resume: false });
      this.monitoredRun = null;
      return;
    }
    if (this.run && !this.runEnded) throw new MlflowError(`monitorSystemMetrics: this tracker's own run ${this.run.runId} is active; its system metrics follow startRun({ logSystemMetrics })`, 'INVALID_STATE');
    const nodeId = parseNodeId('monitorSystemMetrics: nodeId', opts.nodeId);
    await this.start();
    this.monitoredRun = runId;
    this.client.control({ t: 'sysmetrics', runId, resume: true, nodeId });
  }
  private monitoredRun: string | null = null;

  private switchSystemMetrics(runId: string, wanted: boolean | undefined, resume: boolean, nodeId: string | undefined): void {
    this.systemMetricsOn = wanted ?? this.config.enableSystemMetricsLogging;
    if (this.systemMetricsOn) this.client.control({ t: 'sysmetrics', runId, resume, nodeId });
  }

  /** Uploads a file into the run's artifacts (in `artifactPath`, default the root) in the background. */
  logArtifact(localPath: string, artifactPath?: string): void {
    this.enqueueArtifact(localPath, artifactPath, false);
  }

  /** Uploads a directory's contents recursively into the run's artifacts, in the background. */
  logArtifacts(localDir: string, artifactPath?: string): void {
    this.enqueueArtifact(localDir, artifactPath, true);
  }

  private enqueueArtifact(local: string, artifactPath: string | undefined, dir: boolean): void {
    const run = this.requireRun();
    const path = validateArtifactPath(artifactPath);
    const abs = resolve(local);
    let st;
    try { st = statSync(abs); } catch { throw invalidParameter(`${dir ? 'logArtifacts' : 'logArtifact'}: '${local}' does not exist`); }
    if (dir && !st.isDirectory()) throw invalidParameter(`logArtifacts: '${local}' is not a directory (use logArtifact for a file)`);
    if (!dir && !st.isFile()) throw invalidParameter(`logArtifact: '${local}' is not a file (use logArtifacts for a directory)`);
    this.outbox.add({ k: 'art', runId: run.runId, root: run.artifactUri, local: abs, path, dir });
  }

  // -------------------------------------------------------------------------------------------------------
  // Flush and close
  // -------------------------------------------------------------------------------------------------------
  /**
   * Resolves when everything enqueued before it is stored (complete: true), or when `timeoutMs` passes
   * (complete: false, with what is still undelivered and where it is spooled).
   */
  async flush(opts: { timeoutMs?: number } = {}): Promise<FlushReport> {
    await this.start();
    const failure = this.client.failure('the tracker is closed');
    if (failure !== null) return emptyFlushReport([failure]);
    return this.outbox.flush(opts.timeoutMs ?? this.config.closeTimeoutS * 1000, false);
  }

  /**
   * Flushes with a deadline, ends the active run (FINISHED unless given), stops the worker. Never throws for
   * a backend problem: the report says what was not delivered and where the spool is (the next tracker on
   * the same spool directory delivers it).
   */
  close(opts: { status?: RunStatus; timeoutMs?: number } = {}): Promise<CloseReport> {
    if (this.closing) return this.closing;
    this.closing = this.doClose(opts);
    return this.closing;
  }

  private async doClose(opts: { status?: RunStatus; timeoutMs?: number }): Promise<CloseReport> {
    const timeoutMs = opts.timeoutMs ?? this.config.closeTimeoutS * 1000;
    const closeWith = (report: FlushReport, runStatus: RunStatus | null, message: string): CloseReport => {
      this.closed = true;
      return { ...report, runStatus, message };
    };
    if (!this.client.started) return closeWith(emptyFlushReport(), null, 'tracker was never started');
    try {
      await this.client.start();
    } catch (e) {
      return closeWith(emptyFlushReport([(e as Error).message]), null, (e as Error).message);
    }
    let runStatus: RunStatus | null = null;
    await this.monitorSystemMetrics(null);
    if (this.run && !this.runEnded) {
      runStatus = opts.status ?? 'FINISHED';
      this.endActiveRun(this.run, runStatus);
    }
    const failure = this.client.failure('tracker worker exited');
    if (failure !== null) return closeWith(emptyFlushReport([failure]), runStatus, `${failure}: operations not yet handed to the store were lost`);
    const report = await this.outbox.flush(timeoutMs, true).catch((e: Error) => emptyFlushReport([e.message]));
    await this.client.stop();
    unwatchTracker(this);
    const dropped = describe(report.dropped);
    const lost = dropped === 'nothing' ? '' : `; ${dropped} dropped at the spool bound (spoolMaxBytes ${this.config.spoolMaxBytes}) while the backend was unavailable`;
    const message = report.complete
      ? `${lost ? 'tracking data delivered, except what was dropped' : 'all tracking data delivered'}${lost}${report.errors.length ? ` (${report.errors.length} operation(s) refused by the backend: ${report.errors.join('; ')})` : ''}`
      : `close() deadline of ${timeoutMs} ms passed: not delivered ${describe(report.undelivered)}${lost}; kept in the spool ${report.spoolDir ?? '(none)'} — the next MLflowTracker with spoolDir '${this.config.spoolDir}' on the same tracking URI delivers it`;
    if (!report.complete || lost) process.emitWarning(message, 'MLflowTrackerWarning');
    return closeWith(report, runStatus, message);
  }

  /** Ends the run FAILED with the error as tags (used by the uncaught-exception handler). */
  async fail(err: unknown): Promise<CloseReport> {
    if (this.run && !this.runEnded) {
      const e = err instanceof Error ? err : new Error(String(err));
      try {
        this.setTags({ 'error.type': e.name, 'error.message': e.message.slice(0, 5000) });
      } catch { /* tag validation cannot fail here, but never mask the original error */ }
    }
    return this.close({ status: 'FAILED', timeoutMs: Math.min(this.config.closeTimeoutS * 1000, 15_000) });
  }

  /** Queries see everything logged before them: pending logging is delivered first. */
  private async flushIfPending(): Promise<void> {
    if (!this.outbox.pending) return;
    const r = await this.flush();
    if (!r.complete) throw new MlflowError(`tracking backend unavailable: ${describe(r.undelivered)} not delivered yet`, 'TEMPORARILY_UNAVAILABLE');
  }

  // -------------------------------------------------------------------------------------------------------
  // Queries (queries.ts)
  // -------------------------------------------------------------------------------------------------------
  async getRun(runId = this.requireRunId()): Promise<Run> {
    return this.queries.getRun(runId);
  }
  /** Ids, status, times, params, metrics (latest values) and tags of a run. */
  async getRunInfo(runId = this.requireRunId()): Promise<RunSummary> {
    return this.queries.getRunInfo(runId);
  }
  async getMetricHistory(key: string, runId = this.requireRunId()): Promise<Metric[]> {
    return this.queries.getMetricHistory(key, runId);
  }
  /** MLflow's search: filter like "metrics.`val/loss` < 1 AND params.lr = '0.1'", orderBy like "metrics.`val/loss` ASC". */
  async searchRuns(opts: SearchRunsOptions = {}): Promise<Run[]> {
    return this.queries.searchRuns(opts);
  }
  /** The run with the lowest (mode 'min') or highest metric; null when no run has it. */
  async getBestRun(metric = 'val/loss', opts: { mode?: 'min' | 'max'; filter?: string; experimentIds?: string[] } = {}): Promise<BestRun | null> {
    return this.queries.getBestRun(metric, opts);
  }

  // -------------------------------------------------------------------------------------------------------
  // Logged models (logged_models.ts)
  // -------------------------------------------------------------------------------------------------------
  /**
   * Logs an MLflow model folder as an MLflow 3 logged model of the active run (Python's `log_model(name=…)`):
   * `write` gets the new model's id (for MLmodel's `model_id`) and returns the folder to upload under the model's
   * artifact location; the run's metrics at `opts.step` become the model's; PENDING → READY (FAILED on error).
   * On a store without logged models (MLflow 2.x) the folder becomes the run's `<name>/` artifact (one warning).
   */
  async logModel(write: (model: { modelId: string | null; artifactLocation: string }) => string | Promise<string>, opts: LogModelOptions = {}): Promise<LoggedModelResult> {
    return this.models.logModel(this.requireRun(), write, opts);
  }
  async getLoggedModel(modelId: string): Promise<LoggedModel> {
    return this.client.request('getLoggedModel', modelId);
  }
  /** Logged models of the experiments (default: the configured one), newest first. */
  async searchLoggedModels(opts: { experimentIds?: string[]; name?: string; sourceRunId?: string } = {}): Promise<LoggedModel[]> {
    await this.start();
    const ids = opts.experimentIds ?? [this.experimentIdValue ?? (await this.getOrCreateExperiment())];
    return this.client.request('searchLoggedModels', ids, { name: opts.name, sourceRunId: opts.sourceRunId });
  }
  async setLoggedModelTags(modelId: string, tags: Record<string, string>): Promise<void> {
    const checked = Object.entries(tags).map(([k, v]) => validateTag(k, redactTagValue(k, v)));
    return this.client.request('setLoggedModelTags', modelId, checked);
  }

  // -------------------------------------------------------------------------------------------------------
  // Model registry (registry.ts)
  // -------------------------------------------------------------------------------------------------------
  /**
   * Registers `modelUri` (`runs:/<run_id>/<path>`, `s3://…`, `models:/…`, a path) as a new version of `name`
   * (created if missing, with its description and tags), and waits until the version is READY.
   */
  async registerModel(name: string, modelUri: string, opts: RegisterModelOptions = {}): Promise<ModelVersion> {
    return this.registry.registerModel(name, modelUri, opts);
  }
  async transitionModelStage(name: string, version: string | number, stage: ModelStage, opts: { archiveExisting?: boolean } = {}): Promise<ModelVersion> {
    return this.registry.transitionModelStage(name, version, stage, opts.archiveExisting ?? false);
  }
  async getLatestVersions(name: string, stages?: ModelStage[]): Promise<ModelVersion[]> {
    return this.registry.getLatestVersions(name, stages);
  }
  async getModelVersion(name: string, version: string | number): Promise<ModelVersion> {
    return this.registry.getModelVersion(name, version);
  }
  async getRegisteredModel(name: string): Promise<RegisteredModel | null> {
    return this.registry.getRegisteredModel(name);
  }
  async setModelAlias(name: string, alias: string, version: string | number): Promise<void> {
    return this.registry.setModelAlias(name, alias, version);
  }
  async deleteModelAlias(name: string, alias: string): Promise<void> {
    return this.registry.deleteModelAlias(name, alias);
  }
  async getModelVersionByAlias(name: string, alias: string): Promise<ModelVersion> {
    return this.registry.getModelVersionByAlias(name, alias);
  }
}

/** "250 metric point(s), 1 run end(s)" — or "nothing". */
export function describe(c: PendingCounts): string {
  const parts = [
    c.metrics && `${c.metrics} metric point(s)`, c.params && `${c.params} param(s)`, c.tags && `${c.tags} tag(s)`,
    c.artifacts && `${c.artifacts} artifact upload(s)`, c.runEnds && `${c.runEnds} run end(s)`,
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : 'nothing';
}

function safeUser(): string {
  try {
    return process.env.USER || process.env.LOGNAME || userInfo().username || 'unknown';
  } catch {
    return 'unknown';
  }
}

/** A node name for system metric keys, checked as MLFLOW_SYSTEM_METRICS_NODE_ID is (it becomes part of the keys). */
function parseNodeId(what: string, nodeId: string | undefined): string | undefined {
  if (nodeId === undefined) return undefined;
  const r = trackerConfigSchema.shape.systemMetricsNodeId.safeParse(nodeId);
  if (!r.success) throw invalidParameter(`${what} '${nodeId}': ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data;
}
