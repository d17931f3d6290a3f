// MLflowTracker: the training side's view of MLflow. `log…()` only validates and enqueues (no I/O, no
// await); a worker thread batches, writes, retries and spools. `flush()`/`close()` are the only calls that
// wait on logging I/O; queries and registry calls are promises answered by the worker.
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { userInfo } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { loadTrackerConfig, redact, type LoadOptions, type TrackerConfig, type TrackerConfigInput } from '../config.js';
import { invalidParameter, MlflowError } from './errors.js';
import { quoteKey } from './filter.js';
import type { PendingCounts, SpoolOp } from './spool.js';
import type { Experiment, Metric, ModelStage, ModelVersion, RegisteredModel, Run, RunStatus, SearchRunsOptions, Tag } from './types.js';
import { flattenParams, paramValueToString, validateArtifactPath, validateKey, validateParam, validateTag } from './validation.js';
import type { FlushReport, FromWorker, SerializedError, ToWorker, WireOp, WorkerInit } from './worker.js';
import { MetricColumns } from './columns.js';

export interface MLflowTrackerOptions extends TrackerConfigInput {
  /** Tags merged into every run's tags (the reference's defaults: phase, service, model). */
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
}

export interface RunSummary {
  runId: string;
  runName: string;
  experimentId: string;
  status: RunStatus;
  startTime: number | null;
  endTime: number | null;
  artifactUri: string;
  userId: string;
  params: Record<string, string>;
  metrics: Record<string, number>;
  tags: Record<string, string>;
}

export interface BestRun {
  runId: string;
  metric: string;
  value: number;
  params: Record<string, string>;
}

export interface CloseReport extends FlushReport {
  /** How the run was ended (null when no run was open). */
  runStatus: RunStatus | null;
  message: string;
}

export const DEFAULT_RUN_TAGS: Readonly<Record<string, string>> = { phase: 'training', service: 'training', model: 'LocalizationNet' };

const workerUrl = (() => {
  const self = import.meta.url;
  return self.endsWith('.ts') ? new URL('./worker.ts', self) : new URL('./worker.js', self);
})();

/**
 * The worker: compiled JS (dist/) as is; from source (vitest, tsx) through a tiny bootstrap that registers
 * tsx's ESM hooks in the worker thread first (Node 20 has no TypeScript stripping, and `--import` in a
 * worker's execArgv does not apply to its entry module there).
 */
function spawnWorker(workerData: WorkerInit): Worker {
  // The worker needs no flags of the main thread; some (--input-type, -e) even break a worker's start.
  const execArgv = process.execArgv.filter((a) => /^--(enable-source-maps|no-warnings|no-deprecation|trace-warnings|trace-uncaught|stack-trace-limit|max-old-space-size)/.test(a));
  const opts = { workerData, stdout: false, stderr: false, execArgv };
  if (!workerUrl.pathname.endsWith('.ts')) return new Worker(workerUrl, opts);
  const req = createRequire(import.meta.url);
  const tsxApi = pathToFileURL(join(dirname(req.resolve('tsx/package.json')), 'dist', 'esm', 'api', 'index.mjs')).href;
  const code = `import(${JSON.stringify(tsxApi)}).then((m) => m.register()).then(() => import(${JSON.stringify(workerUrl.href)}));`;
  return new Worker(code, { ...opts, eval: true });
}

function deserializeError(e: SerializedError): Error {
  const err = e.code ? new MlflowError(e.message, e.code as never) : new Error(e.message);
  if (!e.code) err.name = e.name;
  return err;
}

const live = new Set<MLflowTracker>();
let handlersInstalled = false;

function installProcessHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals, code: number) => {
    if (stopping) process.exit(code); // a second Ctrl-C does not wait for the flush
    stopping = true;
    process.stderr.write(`\nheimdall-torch: ${signal}: flushing the MLflow tracker and ending the run KILLED\n`);
    const all = [...live].filter((t) => t.handlesSignals);
    Promise.allSettled(all.map((t) => t.close({ status: 'KILLED', timeoutMs: Math.min(t.config.closeTimeoutS * 1000, 15_000) })))
      .finally(() => process.exit(code));
  };
  process.on('SIGINT', () => onSignal('SIGINT', 130));
  process.on('SIGTERM', () => onSignal('SIGTERM', 143));
  process.on('uncaughtException', (err) => {
    process.stderr.write(`${redact(err instanceof Error ? (err.stack ?? err.message) : String(err))}\n`);
    const all = [...live].filter((t) => t.handlesSignals);
    Promise.allSettled(all.map((t) => t.fail(err))).finally(() => process.exit(1));
  });
}

let exitHookInstalled = false;
/** A script that ends without close(): deliver and finish the runs (FINISHED), like MLflow's atexit hook. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('beforeExit', () => {
    for (const t of live) if (t.needsClose) void t.close();
  });
}

export class MLflowTracker {
  readonly config: TrackerConfig;
  readonly defaultTags: Record<string, string>;
  private worker: Worker | null = null;
  private ready: Promise<void> | null = null;
  private nextId = 1;
  private calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private seq = 0;
  private deliveredSeq = 0;
  private buf: { runId: string; metrics: MetricColumns; params: [string, string][]; tags: [string, string][] } | null = null;
  private bufSize = 0;
  private outbox: WireOp[] = [];
  private transfer: ArrayBuffer[] = [];
  private scheduled = false;
  private experimentIdValue: string | null = null;
  private run: { runId: string; artifactUri: string; experimentId: string } | null = null;
  private runEnded = false;
  private loggedParams = new Map<string, string>();
  private keyCache = new Set<string>();
  private closing: Promise<CloseReport> | null = null;
  private closed = false;
  private fatal: Error | null = null;
  private exited = false;
  readonly warnings: string[] = [];

  constructor(options: MLflowTrackerOptions = {}) {
    const { defaultTags, dotenvPath, env, ...cfg } = options;
    const load: LoadOptions = { dotenvPath, env };
    this.config = loadTrackerConfig(cfg, load);
    this.defaultTags = { ...DEFAULT_RUN_TAGS, ...(defaultTags ?? {}) };
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
    return !this.closed && !this.closing && ((this.run !== null && !this.runEnded) || this.seq > this.deliveredSeq || this.bufSize > 0 || this.outbox.length > 0);
  }

  // -------------------------------------------------------------------------------------------------------
  // Worker plumbing
  // -------------------------------------------------------------------------------------------------------
  /** Starts the worker and opens the store (schema check/creation). Called by the first call that needs it. */
  start(): Promise<void> {
    if (this.ready) return this.ready;
    if (this.closed) return Promise.reject(new MlflowError('this MLflowTracker is closed', 'INVALID_STATE'));
    this.ready = new Promise<void>((resolveReady, rejectReady) => {
      const init: WorkerInit = { config: this.config };
      const w = spawnWorker(init);
      this.worker = w;
      live.add(this);
      installExitHook();
      if (this.config.handleSignals) installProcessHandlers();
      let isReady = false;
      w.on('message', (m: FromWorker) => {
        switch (m.t) {
          case 'ready':
            if (m.error) {
              const err = deserializeError(m.error);
              rejectReady(new MlflowError(`cannot open the tracking store ${redact(this.config.trackingUri)}: ${err.message}`, (err as MlflowError).code ?? 'INTERNAL_ERROR'));
              void w.terminate();
              live.delete(this);
            } else {
              isReady = true;
              resolveReady();
            }
            break;
          case 'res': {
            const c = this.calls.get(m.id);
            if (!c) break;
            this.calls.delete(m.id);
            if (m.error) c.reject(deserializeError(m.error));
            else c.resolve(m.value);
            break;
          }
          case 'flushed': {
            const c = this.calls.get(m.id);
            if (c) { this.calls.delete(m.id); c.resolve(m.report); }
            break;
          }
          case 'delivered':
            this.deliveredSeq = Math.max(this.deliveredSeq, m.seq);
            break;
          case 'warn':
            this.warnings.push(m.message);
            if (this.warnings.length > 1000) this.warnings.splice(0, 500);
            break;
        }
        this.updateRef();
      });
      w.on('error', (e) => {
        this.fatal = new MlflowError(`tracker worker failed: ${redact(e.message)}`, 'INTERNAL_ERROR');
        if (!isReady) rejectReady(this.fatal);
        for (const c of this.calls.values()) c.reject(this.fatal);
        this.calls.clear();
      });
      w.on('exit', () => {
        live.delete(this);
        this.exited = true;
        const err = this.fatal ?? new MlflowError('tracker worker exited', 'INTERNAL_ERROR');
        for (const c of this.calls.values()) c.reject(err);
        this.calls.clear();
      });
    });
    return this.ready;
  }

  private updateRef(): void {
    if (!this.worker) return;
    if (this.calls.size > 0) this.worker.ref();
    else this.worker.unref();
  }

  private async call<T>(method: string, ...args: unknown[]): Promise<T> {
    await this.start();
    if (this.fatal) throw this.fatal;
    if (this.exited) throw new MlflowError('this MLflowTracker is closed', 'INVALID_STATE');
    return new Promise<T>((res, rej) => {
      const id = this.nextId++;
      this.calls.set(id, { resolve: res as (v: unknown) => void, reject: rej });
      this.post({ t: 'req', id, method, args });
      this.updateRef();
    });
  }

  private post(m: ToWorker): void {
    this.worker!.postMessage(m);
  }

  /** Moves the current metric/param/tag buffer into the outbox, and schedules sending it. */
  private seal(): void {
    const b = this.buf;
    if (b && (b.metrics.n || b.params.length || b.tags.length)) {
      const { wire, transfer } = b.metrics.toWire();
      this.outbox.push({ k: 'mlog', runId: b.runId, m: wire, params: b.params, tags: b.tags });
      this.transfer.push(...transfer);
    }
    this.buf = null;
    this.bufSize = 0;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.send());
  }

  /** Sends everything buffered to the worker (in order). */
  private send(): void {
    this.scheduled = false;
    this.seal();
    if (!this.outbox.length) return;
    if (!this.worker) {
      // The worker is still starting: keep the order, retry shortly.
      void this.start().then(() => this.send(), () => {});
      return;
    }
    const ops = this.outbox;
    const transfer = this.transfer;
    this.outbox = [];
    this.transfer = [];
    this.seq += ops.length;
    this.worker.postMessage({ t: 'ops', seq: this.seq, ops } satisfies ToWorker, transfer);
  }

  private requireRun(): { runId: string; artifactUri: string; experimentId: string } {
    if (!this.run || this.runEnded) throw new MlflowError('No active run: call startRun() first', 'INVALID_STATE');
    return this.run;
  }

  private buffer(runId: string) {
    if (!this.buf || this.buf.runId !== runId) {
      this.seal();
      this.buf = { runId, metrics: new MetricColumns(), params: [], tags: [] };
    }
    return this.buf;
  }

  // -------------------------------------------------------------------------------------------------------
  // Experiments and runs
  // -------------------------------------------------------------------------------------------------------
  /** Gets or creates an experiment by name (default: the configured one) with the configured artifact location. */
  async getOrCreateExperiment(name = this.config.experimentName, opts: { artifactLocation?: string; tags?: Record<string, string> } = {}): Promise<string> {
    const existing = await this.call<Experiment | null>('getExperimentByName', name);
    if (existing) {
      if (existing.lifecycleStage !== 'active') throw invalidParameter(`Experiment '${name}' is deleted: restore it or use another name`);
      return existing.experimentId;
    }
    const tags = Object.entries(opts.tags ?? {}).map(([key, value]) => validateTag(key, redact(value)));
    try {
      return await this.call<string>('createExperiment', name, opts.artifactLocation ?? this.config.artifactUri, tags);
    } catch (e) {
      if ((e as MlflowError).code === 'RESOURCE_ALREADY_EXISTS') {
        const again = await this.call<Experiment | null>('getExperimentByName', name);
        if (again) return again.experimentId;
      }
      throw e;
    }
  }

  async getExperiment(experimentId: string): Promise<Experiment> {
    return this.call('getExperiment', experimentId);
  }
  async getExperimentByName(name: string): Promise<Experiment | null> {
    return this.call('getExperimentByName', name);
  }
  async searchExperiments(filter?: string, maxResults?: number): Promise<Experiment[]> {
    return this.call('searchExperiments', filter, maxResults);
  }

  /** Starts a run (or resumes `runId`) in the configured experiment; returns its id. */
  async startRun(opts: StartRunOptions = {}): Promise<string> {
    if (this.run && !this.runEnded) throw new MlflowError(`Run ${this.run.runId} is still active: endRun() it first`, 'INVALID_STATE');
    await this.start();
    if (opts.runId) {
      const run = await this.call<Run>('getRun', opts.runId);
      if (run.info.lifecycleStage !== 'active') throw invalidParameter(`Run ${opts.runId} is deleted`);
      if (run.info.status !== 'RUNNING') await this.call('updateRun', opts.runId, 'RUNNING', null);
      this.run = { runId: run.info.runId, artifactUri: run.info.artifactUri, experimentId: run.info.experimentId };
      this.experimentIdValue = run.info.experimentId;
      this.runEnded = false;
      this.loggedParams = new Map(Object.entries(run.params));
      if (opts.tags) this.setTags(opts.tags);
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
    const info = await this.call<{ runId: string; artifactUri: string; experimentId: string }>('createRun', {
      experimentId, runName: opts.runName, startTime: Date.now(), userId: user, tags,
    });
    this.run = { runId: info.runId, artifactUri: info.artifactUri, experimentId: info.experimentId };
    this.runEnded = false;
    this.loggedParams = new Map();
    return info.runId;
  }

  /** Ends the active run (FINISHED, FAILED or KILLED) after everything logged to it; waits for delivery. */
  async endRun(status: RunStatus = 'FINISHED', opts: { timeoutMs?: number } = {}): Promise<FlushReport> {
    if (!['FINISHED', 'FAILED', 'KILLED'].includes(status)) throw invalidParameter(`endRun: status must be FINISHED, FAILED or KILLED, got ${status}`);
    const run = this.requireRun();
    this.seal();
    this.outbox.push({ k: 'end', runId: run.runId, status, endTime: Date.now() });
    this.runEnded = true;
    return this.flush(opts);
  }

  // -------------------------------------------------------------------------------------------------------
  // Logging: validate, enqueue, return. Never awaits, never throws for a backend problem.
  // -------------------------------------------------------------------------------------------------------
  /** Logs one metric point (timestamp now, step default 0). */
  logMetric(key: string, value: number, step = 0, timestamp = Date.now()): void {
    const run = this.requireRun();
    if (!this.keyCache.has(key)) { validateKey('metric', key); this.keyCache.add(key); }
    if (typeof value !== 'number') throw invalidParameter(`Metric '${key}': value must be a number, got ${typeof value}`);
    if (!Number.isSafeInteger(step)) throw invalidParameter(`Metric '${key}': step must be an integer, got ${step}`);
    const cols = this.buffer(run.runId).metrics;
    cols.push(key, value, step, timestamp);
    this.bufSize++;
    if (cols.full) this.seal();
    this.schedule();
  }

  /** Logs several metrics at one step (timestamp now). */
  logMetrics(metrics: Record<string, number>, step = 0, timestamp = Date.now()): void {
    const run = this.requireRun();
    if (!Number.isSafeInteger(step)) throw invalidParameter(`logMetrics: step must be an integer, got ${step}`);
    // Validate all first: a refused call enqueues nothing.
    for (const key in metrics) {
      if (!this.keyCache.has(key)) { validateKey('metric', key); this.keyCache.add(key); }
      if (typeof metrics[key] !== 'number') throw invalidParameter(`Metric '${key}': value must be a number, got ${typeof metrics[key]}`);
    }
    let cols = this.buffer(run.runId).metrics;
    for (const key in metrics) {
      cols.push(key, metrics[key]!, step, timestamp);
      this.bufSize++;
      if (cols.full) {
        this.seal();
        cols = this.buffer(run.runId).metrics;
      }
    }
    if (this.outbox.length >= 16) this.send();
    else if (!this.scheduled) this.schedule();
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
    const buf = this.buffer(run.runId);
    for (const [k, v] of checked) {
      if (this.loggedParams.has(k)) continue; // same value: nothing to send
      this.loggedParams.set(k, v);
      buf.params.push([k, v]);
      this.bufSize++;
    }
    this.schedule();
  }

  logParam(key: string, value: unknown): void {
    this.logParams({ [key]: value });
  }

  /** Sets run tags (values redacted of secrets). */
  setTags(tags: Record<string, unknown>): void {
    const run = this.requireRun();
    const checked = Object.entries(tags).map(([k, v]) => validateTag(k, redactTagValue(k, paramValueToString(v)), (w) => this.warnings.push(w)));
    const buf = this.buffer(run.runId);
    for (const t of checked) { buf.tags.push([t.key, t.value]); this.bufSize++; }
    this.schedule();
  }

  setTag(key: string, value: unknown): void {
    this.setTags({ [key]: value });
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
    this.seal();
    this.outbox.push({ k: 'art', runId: run.runId, root: run.artifactUri, local: abs, path, dir });
    this.schedule();
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
    if (this.fatal || this.exited) {
      const why = this.fatal?.message ?? 'the tracker is closed';
      return { complete: false, undelivered: zero(), dropped: zero(), errors: [why], spoolDir: null, uploaded: [] };
    }
    this.send();
    const id = this.nextId++;
    return new Promise<FlushReport>((res, rej) => {
      this.calls.set(id, { resolve: res as (v: unknown) => void, reject: rej });
      this.post({ t: 'flush', id, seq: this.seq, timeoutMs: opts.timeoutMs ?? this.config.closeTimeoutS * 1000, persist: false });
      this.updateRef();
    });
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
    let runStatus: RunStatus | null = null;
    if (!this.ready) {
      this.closed = true;
      return { complete: true, undelivered: zero(), dropped: zero(), errors: [], spoolDir: null, uploaded: [], runStatus: null, message: 'tracker was never started' };
    }
    try {
      await this.ready;
    } catch (e) {
      this.closed = true;
      return { complete: false, undelivered: zero(), dropped: zero(), errors: [(e as Error).message], spoolDir: null, uploaded: [], runStatus: null, message: (e as Error).message };
    }
    if (this.run && !this.runEnded) {
      runStatus = opts.status ?? 'FINISHED';
      this.seal();
      this.outbox.push({ k: 'end', runId: this.run.runId, status: runStatus, endTime: Date.now() });
      this.runEnded = true;
    }
    if (this.fatal || this.exited) {
      this.closed = true;
      const why = this.fatal?.message ?? 'tracker worker exited';
      return { complete: false, undelivered: zero(), dropped: zero(), errors: [why], spoolDir: null, uploaded: [], runStatus, message: `${why}: operations not yet handed to the store were lost` };
    }
    this.send();
    const id = this.nextId++;
    const report = await new Promise<FlushReport>((res, rej) => {
      this.calls.set(id, { resolve: res as (v: unknown) => void, reject: rej });
      this.post({ t: 'flush', id, seq: this.seq, timeoutMs, persist: true });
      this.updateRef();
    }).catch((e: Error) => ({ complete: false, undelivered: zero(), dropped: zero(), errors: [e.message], spoolDir: null, uploaded: [] }) as FlushReport);
    try { await this.call('close'); } catch { /* worker already gone */ }
    await this.worker?.terminate();
    live.delete(this);
    this.closed = true;
    const message = report.complete
      ? `all tracking data delivered${report.errors.length ? ` (${report.errors.length} operation(s) refused by the backend: ${report.errors.join('; ')})` : ''}`
      : `close() deadline of ${timeoutMs} ms passed: not delivered ${describe(report.undelivered)}; kept in the spool ${report.spoolDir ?? '(none)'} — the next MLflowTracker with spoolDir '${this.config.spoolDir}' on the same tracking URI delivers it`;
    if (!report.complete) process.emitWarning(message, 'MLflowTrackerWarning');
    return { ...report, runStatus, message };
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

  // -------------------------------------------------------------------------------------------------------
  // Queries (they see everything logged before them: pending logging is flushed first)
  // -------------------------------------------------------------------------------------------------------
  private async flushIfPending(): Promise<void> {
    if (this.bufSize || this.outbox.length || this.seq > this.deliveredSeq) {
      const r = await this.flush();
      if (!r.complete) throw new MlflowError(`tracking backend unavailable: ${describe(r.undelivered)} not delivered yet`, 'TEMPORARILY_UNAVAILABLE');
    }
  }

  async getRun(runId = this.requireRunId()): Promise<Run> {
    await this.flushIfPending();
    return this.call('getRun', runId);
  }

  /** Ids, status, times, params, metrics (latest values) and tags of a run. */
  async getRunInfo(runId = this.requireRunId()): Promise<RunSummary> {
    const r = await this.getRun(runId);
    return { ...r.info, params: r.params, metrics: r.metrics, tags: r.tags };
  }

  async getMetricHistory(key: string, runId = this.requireRunId()): Promise<Metric[]> {
    await this.flushIfPending();
    return this.call('getMetricHistory', runId, key);
  }

  /** MLflow's search: filter like "metrics.`val/loss` < 1 AND params.lr = '0.1'", orderBy like "metrics.`val/loss` ASC". */
  async searchRuns(opts: SearchRunsOptions = {}): Promise<Run[]> {
    await this.flushIfPending();
    const experimentIds = opts.experimentIds ?? [this.experimentIdValue ?? (await this.getOrCreateExperiment())];
    return this.call('searchRuns', { ...opts, experimentIds });
  }

  /** The run with the lowest (mode 'min') or highest metric; null when no run has it. */
  async getBestRun(metric = 'val/loss', opts: { mode?: 'min' | 'max'; filter?: string; experimentIds?: string[] } = {}): Promise<BestRun | null> {
    validateKey('metric', metric);
    const mode = opts.mode ?? 'min';
    const q = quoteKey(metric);
    const has = `metrics.${q} >= -1.7976931348623157e308`;
    const runs = await this.searchRuns({
      experimentIds: opts.experimentIds,
      filter: opts.filter ? `${opts.filter} AND ${has}` : has,
      orderBy: [`metrics.${q} ${mode === 'min' ? 'ASC' : 'DESC'}`],
      maxResults: 20,
    });
    const best = runs.find((r) => typeof r.metrics[metric] === 'number' && !Number.isNaN(r.metrics[metric]));
    return best ? { runId: best.info.runId, metric, value: best.metrics[metric]!, params: best.params } : null;
  }

  private requireRunId(): string {
    if (!this.run) throw new MlflowError('No run: pass a run id or call startRun() first', 'INVALID_STATE');
    return this.run.runId;
  }

  // -------------------------------------------------------------------------------------------------------
  // Model registry
  // -------------------------------------------------------------------------------------------------------
  /**
   * Registers `modelUri` (`runs:/<run_id>/<path>`, `s3://…`, `models:/…`, a path) as a new version of `name`
   * (created if missing, with its description and tags), and waits until the version is READY.
   */
  async registerModel(name: string, modelUri: string, opts: { description?: string; tags?: Record<string, string>; timeoutS?: number } = {}): Promise<ModelVersion> {
    if (/^runs:\/\//i.test(modelUri)) throw invalidParameter(`Invalid model URI '${modelUri}': run URIs are runs:/<run_id>/<path> (one slash)`);
    if (/^s3:\/\/s3:\/\//i.test(modelUri)) throw invalidParameter(`Invalid model URI '${modelUri}': doubled s3:// prefix`);
    await this.flushIfPending();
    const tags = Object.entries(opts.tags ?? {}).map(([key, value]) => ({ key, value: redactTagValue(key, value) }));
    let runId: string | null = null;
    let source = modelUri;
    const m = /^runs:\/([0-9a-zA-Z_-]+)(?:\/(.*))?$/.exec(modelUri);
    if (m) {
      runId = m[1]!;
      const run = await this.call<Run>('getRun', runId);
      source = m[2] ? `${run.info.artifactUri.replace(/\/+$/, '')}/${validateArtifactPath(m[2])}` : run.info.artifactUri;
    }
    const existing = await this.call<RegisteredModel | null>('getRegisteredModel', name);
    if (!existing) {
      try {
        await this.call('createRegisteredModel', name, opts.description, tags);
      } catch (e) {
        if ((e as MlflowError).code !== 'RESOURCE_ALREADY_EXISTS') throw e;
      }
    } else if (opts.description && existing.description !== opts.description) {
      await this.call('updateRegisteredModelDescription', name, opts.description);
    }
    let mv = await this.call<ModelVersion>('createModelVersion', name, source, runId, opts.description, tags);
    const deadline = Date.now() + (opts.timeoutS ?? 300) * 1000;
    while (mv.status === 'PENDING_REGISTRATION') {
      if (Date.now() > deadline) throw new MlflowError(`Model version ${name}/${mv.version} not READY after ${opts.timeoutS ?? 300} s`, 'INTERNAL_ERROR');
      await new Promise((r) => setTimeout(r, 1000));
      mv = await this.call<ModelVersion>('getModelVersion', name, mv.version);
    }
    if (mv.status !== 'READY') throw new MlflowError(`Model version ${name}/${mv.version} registration failed: ${mv.statusMessage ?? mv.status}`, 'INTERNAL_ERROR');
    return mv;
  }

  async transitionModelStage(name: string, version: string | number, stage: ModelStage, opts: { archiveExisting?: boolean } = {}): Promise<ModelVersion> {
    return this.call('transitionModelVersionStage', name, String(version), stage, opts.archiveExisting ?? false);
  }
  async getLatestVersions(name: string, stages?: ModelStage[]): Promise<ModelVersion[]> {
    return this.call('getLatestVersions', name, stages);
  }
  async getModelVersion(name: string, version: string | number): Promise<ModelVersion> {
    return this.call('getModelVersion', name, String(version));
  }
  async getRegisteredModel(name: string): Promise<RegisteredModel | null> {
    return this.call('getRegisteredModel', name);
  }
  async setModelAlias(name: string, alias: string, version: string | number): Promise<void> {
    await this.call('setRegisteredModelAlias', name, alias, String(version));
  }
  async deleteModelAlias(name: string, alias: string): Promise<void> {
    await this.call('deleteRegisteredModelAlias', name, alias);
  }
  async getModelVersionByAlias(name: string, alias: string): Promise<ModelVersion> {
    return this.call('getModelVersionByAlias', name, alias);
  }
}

function zero(): PendingCounts {
  return { metrics: 0, params: 0, tags: 0, artifacts: 0, runEnds: 0 };
}

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

/** A tag/param value with secrets removed; a secret-named key keeps only '***'. */
function redactTagValue(key: string, value: string): string {
  return redact({ [key]: value })[key] as string;
}
