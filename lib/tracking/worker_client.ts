// The tracker's end of the worker thread: starts it, sends the messages of protocol.ts and matches the replies
// to their requests. `request()` is typed by TrackingStore: the compiler checks each call's method, arguments
// and result against the store interface.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { redact, type TrackerConfig } from '../config.js';
import { MlflowError } from './errors.js';
import {
  deserializeError, type FlushReport, type FromWorker, type StoreArgs, type StoreMethod, type StoreReply, type StoreRequest, type ToWorker,
  type WireOp, type WorkerInit,
} from './protocol.js';
// worker.ts is started by URL, never imported: this keeps it in every compilation that starts from index.ts.
import type {} from './worker.js';

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

export interface WorkerEvents {
  /** The worker thread exists (before it is ready). */
  started(): void;
  /** The worker thread is gone, or never became ready. */
  gone(): void;
  warning(message: string): void;
}

interface Waiter { resolve(value: unknown): void; reject(e: Error): void }

export class WorkerClient {
  private worker: Worker | null = null;
  private ready: Promise<void> | null = null;
  private nextId = 1;
  private waiters = new Map<number, Waiter>();
  /** Highest sequence number of logging operations the worker has delivered. */
  deliveredSeq = 0;
  private fatal: Error | null = null;
  private exited = false;

  constructor(private readonly config: TrackerConfig, private readonly events: WorkerEvents) {}

  /** True once start() was called (whether or not the worker became ready). */
  get started(): boolean {
    return this.ready !== null;
  }
  /** True once the worker thread exists. */
  get spawned(): boolean {
    return this.worker !== null;
  }
  /** True while the worker can be sent operations (started, not failed, not exited). */
  get running(): boolean {
    return this.worker !== null && !this.fatal && !this.exited;
  }
  /** Why the worker takes no more work (null while it does): its failure, else `ifExited` once it has exited. */
  failure(ifExited: string): string | null {
    return this.fatal?.message ?? (this.exited ? ifExited : null);
  }

  /** Starts the worker, which opens the store (schema check/creation); resolves when it is ready. */
  start(): Promise<void> {
    if (this.ready) return this.ready;
    this.ready = new Promise<void>((resolveReady, rejectReady) => {
      const w = spawnWorker({ config: this.config });
      this.worker = w;
      this.events.started();
      let isReady = false;
      w.on('message', (m: FromWorker) => {
        switch (m.t) {
          case 'ready':
            if (m.error) {
              const err = deserializeError(m.error);
              rejectReady(new MlflowError(`cannot open the tracking store ${redact(this.config.trackingUri)}: ${err.message}`, err instanceof MlflowError ? err.code : 'INTERNAL_ERROR'));
              void w.terminate();
              this.events.gone();
            } else {
              isReady = true;
              resolveReady();
            }
            break;
          case 'res':
            if (m.error) this.settle(m.id, (w) => w.reject(deserializeError(m.error!)));
            else this.settle(m.id, (w) => w.resolve(m.value));
            break;
          case 'flushed':
            this.settle(m.id, (w) => w.resolve(m.report));
            break;
          case 'delivered':
            this.deliveredSeq = Math.max(this.deliveredSeq, m.seq);
            break;
          case 'warn':
            this.events.warning(m.message);
            break;
        }
        this.updateRef();
      });
      w.on('error', (e) => {
        this.fatal = new MlflowError(`tracker worker failed: ${redact(e.message)}`, 'INTERNAL_ERROR');
        if (!isReady) rejectReady(this.fatal);
        this.rejectAll(this.fatal);
      });
      w.on('exit', () => {
        this.events.gone();
        this.exited = true;
        this.rejectAll(this.fatal ?? new MlflowError('tracker worker exited', 'INTERNAL_ERROR'));
      });
    });
    return this.ready;
  }

  /** Calls a store method in the worker: `method` and `args` as TrackingStore declares them, resolving to its result. */
  async request<K extends StoreMethod>(method: K, ...args: StoreArgs[K]): Promise<StoreReply[K]> {
    await this.start();
    if (this.fatal) throw this.fatal;
    if (this.exited) throw new MlflowError('this MLflowTracker is closed', 'INVALID_STATE');
    return this.send<StoreReply[K], K>((id): StoreRequest<K> => ({ t: 'req', id, method, args }));
  }

  /**
   * The one flush-and-wait: resolves with the worker's report when every operation up to `seq` is delivered,
   * or at `timeoutMs` with what is not (`persist`: and with the rest written to the spool for the next tracker).
   */
  flush(seq: number, timeoutMs: number, persist: boolean): Promise<FlushReport> {
    return this.send<FlushReport>((id) => ({ t: 'flush', id, seq, timeoutMs, persist }));
  }

  /** Hands logging operations (numbered up to `seq`) to the worker; their metric columns are transferred. */
  sendOps(seq: number, ops: WireOp[], transfer: ArrayBuffer[]): void {
    this.worker!.postMessage({ t: 'ops', seq, ops } satisfies ToWorker, transfer);
  }

  /** Sends a control message that needs no reply (the system metrics switch); nothing when the worker is gone. */
  control(m: Extract<ToWorker, { t: 'sysmetrics' }>): void {
    if (this.running) this.worker!.postMessage(m satisfies ToWorker);
  }

  /** Closes the store and ends the worker thread. */
  async stop(): Promise<void> {
    if (this.running) {
      try { await this.send<null>((id) => ({ t: 'close', id })); } catch { /* worker already gone */ }
    }
    await this.worker?.terminate();
  }

  /** Posts a message with a fresh id and waits for the reply with that id. (A request for one method K is a ToWorker.) */
  private send<T, K extends StoreMethod = StoreMethod>(message: (id: number) => ToWorker | StoreRequest<K>): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiters.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.worker!.postMessage(message(id));
      this.updateRef();
    });
  }

  private settle(id: number, how: (w: Waiter) => void): void {
    const w = this.waiters.get(id);
    if (!w) return;
    this.waiters.delete(id);
    how(w);
  }

  private rejectAll(err: Error): void {
    for (const w of this.waiters.values()) w.reject(err);
    this.waiters.clear();
  }

  /** The worker keeps the process alive only while a reply is awaited. */
  private updateRef(): void {
    if (!this.worker) return;
    if (this.waiters.size > 0) this.worker.ref();
    else this.worker.unref();
  }
}
