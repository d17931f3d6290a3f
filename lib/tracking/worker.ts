// The tracker's worker thread: owns the store and the artifact repositories, batches logging operations
// into MLflow's limits, retries with backoff, spools to disk while the backend is down, answers requests.
import { parentPort, workerData } from 'node:worker_threads';
import type { TrackerConfig } from '../config.js';
import { artifactRepositoryFor, type ArtifactRepository, type UploadedArtifact } from './artifacts.js';
import { isRetryable, MlflowError, toSafeError } from './errors.js';
import { backoffMs, timerMs } from './rest/http.js';
import { wireToMetrics, type WireMetrics } from './columns.js';
import { Spool, countOp, emptyCounts, type PendingCounts, type SpoolOp } from './spool.js';
import { openStore } from './stores.js';
import type { LogBatch, TrackingStore } from './types.js';
import { MAX_ENTITIES_PER_BATCH, MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH } from './validation.js';

export interface WorkerInit {
  config: TrackerConfig;
}

/** Messages from the tracker to the worker. */
export type ToWorker =
  | { t: 'ops'; seq: number; ops: WireOp[] }
  | { t: 'req'; id: number; method: string; args: unknown[] }
  | { t: 'flush'; id: number; seq: number; timeoutMs: number; persist: boolean };

/** An operation as sent by the tracker: metric points travel in columns (see columns.ts). */
export type WireOp = SpoolOp | { k: 'mlog'; runId: string; m: WireMetrics; params: [string, string][]; tags: [string, string][] };

/** Messages from the worker to the tracker. */
export type FromWorker =
  | { t: 'ready'; error?: SerializedError }
  | { t: 'res'; id: number; value?: unknown; error?: SerializedError }
  | { t: 'flushed'; id: number; report: FlushReport }
  | { t: 'delivered'; seq: number }
  | { t: 'warn'; message: string };

export interface SerializedError { name: string; message: string; code?: string; stack?: string }

export interface FlushReport {
  /** True when everything enqueued before the flush is stored. */
  complete: boolean;
  /** What is not stored yet (in memory or in the spool). */
  undelivered: PendingCounts;
  /** Points dropped because the spool was full. */
  dropped: PendingCounts;
  /** Operations the backend refused (not retryable), with the reason. */
  errors: string[];
  /** Where undelivered operations are kept on disk, if anywhere. */
  spoolDir: string | null;
  uploaded: UploadedArtifact[];
}

const serialize = (e: unknown): SerializedError => {
  const s = toSafeError(e);
  return { name: s.name, message: s.message, code: (s as { code?: string }).code, stack: s.stack };
};

/** Operations (chunks of up to 4096 points) held in memory before overflowing to the spool. */
const MAX_QUEUED_OPS = 256;

interface QueueItem { seq: number; op: SpoolOp; mOff: number; pOff: number; tOff: number }

class TrackerWorker {
  private store!: TrackingStore;
  private readonly cfg: TrackerConfig;
  private readonly spool: Spool;
  private queue: QueueItem[] = [];
  private delivered = 0; // highest seq fully handled, in order
  private lastSeq = 0;
  private spooling = false;
  private wake: (() => void) | null = null;
  private running = false;
  private failures = 0;
  private errors: string[] = [];
  private uploaded: UploadedArtifact[] = [];
  private flushWaiters: { id: number; seq: number; timer: NodeJS.Timeout; persist: boolean }[] = [];
  private repos = new Map<string, ArtifactRepository>();
  private readonly batchLimit: number;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(init: WorkerInit) {
    this.cfg = init.config;
    this.spool = new Spool(this.cfg.spoolDir, this.cfg.trackingUri, this.cfg.spoolMaxBytes);
    this.batchLimit = /^https?:/i.test(this.cfg.trackingUri) ? MAX_ENTITIES_PER_BATCH : 10_000;
  }

  async start(): Promise<void> {
    this.store = await openStore(this.cfg);
    if (this.spool.adoptOrphans() > 0) {
      this.spooling = true;
      this.foreignPending = true;
      post({ t: 'warn', message: `delivering operations left in the spool ${this.spool.root} by an earlier tracker` });
    }
    void this.loop();
  }

  onMessage(m: ToWorker): void {
    if (m.t === 'ops') {
      const first = m.seq - m.ops.length + 1;
      const items = m.ops.map((w, i) => {
        const op: SpoolOp = w.k === 'mlog' ? { k: 'log', runId: w.runId, metrics: wireToMetrics(w.m), params: w.params, tags: w.tags } : w;
        return { seq: first + i, op, mOff: 0, pOff: 0, tOff: 0 };
      });
      this.lastSeq = m.seq;
      if (this.spooling) this.spoolItems(items);
      else {
        this.queue.push(...items);
        // A backend slower than the training for long: keep memory bounded, overflow to the (bounded) spool.
        if (this.queue.length > MAX_QUEUED_OPS) {
          this.spoolItems(this.queue);
          this.queue = [];
          this.spooling = true;
          post({ t: 'warn', message: `tracking backend slower than logging: queue overflowed to the spool ${this.spool.dir}` });
        }
      }
      this.kick();
    } else if (m.t === 'req') {
      void this.request(m.id, m.method, m.args);
    } else if (m.t === 'flush') {
      this.flush(m.id, m.seq, m.timeoutMs, m.persist);
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Delivery
  // -------------------------------------------------------------------------------------------------------
  private kick(): void {
    if (this.wake) { const w = this.wake; this.wake = null; w(); }
  }

  private spoolItems(items: QueueItem[]): void {
    // Items partially delivered keep only their undelivered part.
    this.spool.append(items.map((it) => ({ ...remaining(it), q: it.seq, o: this.spool.id })));
    this.spooledSeq = Math.max(this.spooledSeq, items.length ? items[items.length - 1]!.seq : 0);
  }
  private spooledSeq = 0;
  /** Operations adopted from an earlier tracker's spool are not delivered yet (flush waits for them too). */
  private foreignPending = false;

  private async loop(): Promise<void> {
    this.running = true;
    for (;;) {
      try {
        if (this.spooling) {
          const done = await this.deliverSpool();
          if (done) {
            this.spooling = false;
            this.foreignPending = false;
            this.failures = 0;
            // Everything spooled is delivered, which includes every seq up to spooledSeq.
            this.markDelivered(Math.max(this.spooledSeq, this.delivered));
            this.spool.cleanupIfEmpty();
            continue;
          }
        } else if (this.queue.length) {
          await this.deliverQueue();
          this.failures = 0;
          continue;
        } else {
          await new Promise<void>((r) => (this.wake = r));
          continue;
        }
      } catch (e) {
        if (!isRetryable(e)) throw e; // a bug: surfaced by the worker's error handler
        // Backend down: keep everything in order on disk, then back off.
        if (!this.spooling) {
          this.spoolItems(this.queue);
          this.queue = [];
          this.spooling = true;
          post({ t: 'warn', message: `tracking backend unavailable (${toSafeError(e).message}); spooling to ${this.spool.dir}` });
        }
        const wait = backoffMs(this.failures++, 200, 5000);
        await new Promise<void>((r) => { this.retryTimer = setTimeout(r, wait); });
        this.retryTimer = null;
      }
    }
  }

  /** Builds the next batch from the head of `items` (consecutive log ops of one run within the limits). */
  private nextBatch(items: { op: SpoolOp; mOff: number; pOff: number; tOff: number }[]): { batch: LogBatch; takes: number[] } | null {
    const head = items[0];
    if (!head || head.op.k !== 'log') return null;
    const runId = head.op.runId;
    const batch: LogBatch = { runId, metrics: [], params: [], tags: [] };
    const rest = /^https?:/i.test(this.cfg.trackingUri);
    const maxM = rest ? MAX_METRICS_PER_BATCH : this.batchLimit;
    const maxPT = rest ? MAX_PARAMS_TAGS_PER_BATCH : this.batchLimit;
    const takes: number[] = [];
    const paramKeys = new Set<string>();
    for (const it of items) {
      const op = it.op;
      if (op.k !== 'log' || op.runId !== runId) break;
      const total = () => batch.metrics.length + batch.params.length + batch.tags.length;
      const room = () => this.batchLimit - total();
      // A param key twice in one batch is an error in MLflow: end the batch before it.
      if (op.params.slice(it.pOff).some((p) => paramKeys.has(p[0]))) break;
      const np = Math.min(op.params.length - it.pOff, maxPT - batch.params.length, room());
      for (const p of op.params.slice(it.pOff, it.pOff + np)) { batch.params.push({ key: p[0], value: p[1] }); paramKeys.add(p[0]); }
      const nt = Math.min(op.tags.length - it.tOff, maxPT - batch.tags.length, room());
      for (const t of op.tags.slice(it.tOff, it.tOff + nt)) batch.tags.push({ key: t[0], value: t[1] });
      const nm = Math.min(op.metrics.length - it.mOff, maxM - batch.metrics.length, room());
      for (let i = it.mOff; i < it.mOff + nm; i++) batch.metrics.push(op.metrics[i]!);
      takes.push(np, nt, nm);
      const complete = it.pOff + np === op.params.length && it.tOff + nt === op.tags.length && it.mOff + nm === op.metrics.length;
      if (!complete || room() <= 0) break;
    }
    return { batch, takes };
  }

  private applyTakes(items: { mOff: number; pOff: number; tOff: number; op: SpoolOp }[], takes: number[]): number {
    let completed = 0;
    for (let i = 0; i * 3 < takes.length; i++) {
      const it = items[i]!;
      it.pOff += takes[i * 3]!;
      it.tOff += takes[i * 3 + 1]!;
      it.mOff += takes[i * 3 + 2]!;
      const op = it.op;
      if (op.k === 'log' && it.pOff === op.params.length && it.tOff === op.tags.length && it.mOff === op.metrics.length) completed++;
    }
    return completed;
  }

  /** Delivers one operation or batch from the head of `items`; returns how many items completed. */
  private async deliverHead(items: QueueItem[] | { op: SpoolOp; mOff: number; pOff: number; tOff: number }[]): Promise<number> {
    const head = items[0]!;
    try {
      if (head.op.k === 'log') {
        const nb = this.nextBatch(items)!;
        await this.store.logBatch(nb.batch);
        return this.applyTakes(items, nb.takes);
      }
      if (head.op.k === 'end') {
        await this.store.updateRun(head.op.runId, head.op.status as never, head.op.endTime);
        return 1;
      }
      const op = head.op;
      const repo = this.repo(op.root);
      const up = op.dir ? await repo.logArtifacts(op.local, op.path) : await repo.logArtifact(op.local, op.path);
      this.uploaded.push(...up);
      return 1;
    } catch (e) {
      if (isRetryable(e)) throw e;
      // Refused by the backend (or a vanished local file): drop it, report it at the next flush.
      const what = head.op.k === 'log' ? `log batch for run ${head.op.runId}` : head.op.k === 'end' ? `end of run ${head.op.runId}` : `artifact '${head.op.local}'`;
      const msg = `${what}: ${toSafeError(e).message}`;
      this.errors.push(msg);
      post({ t: 'warn', message: msg });
      if (head.op.k === 'log') {
        const nb = this.nextBatch(items)!;
        return this.applyTakes(items, nb.takes);
      }
      return 1;
    }
  }

  private async deliverQueue(): Promise<void> {
    const q = this.queue;
    const n = await this.deliverHead(q);
    // Moved to the spool meanwhile (close deadline): the spool redelivers it, and redelivery is idempotent.
    if (q !== this.queue) return;
    if (n > 0) {
      const done = this.queue.splice(0, n);
      this.markDelivered(done[done.length - 1]!.seq);
    }
  }

  /** Delivers the spool segment by segment; true when the spool is empty. */
  private async deliverSpool(): Promise<boolean> {
    for (;;) {
      const seg = this.spool.next();
      if (!seg) return true;
      const items = seg.ops.slice(seg.start).map((op) => ({ op, mOff: 0, pOff: 0, tOff: 0 }));
      let pos = seg.start;
      while (items.length) {
        const n = await this.deliverHead(items);
        if (n > 0) {
          const done = items.splice(0, n);
          pos += n;
          this.spool.advance(seg.n, pos);
          // Our own spooled operations carry their sequence number: flush() need not wait for the rest.
          let q = 0;
          for (const d of done) {
            const tagged = d.op as SpoolOp & { q?: number; o?: string };
            if (tagged.o === this.spool.id && typeof tagged.q === 'number') q = Math.max(q, tagged.q);
          }
          if (q > 0) this.markDelivered(q);
        }
      }
      this.spool.finish(seg.n);
    }
  }

  private markDelivered(seq: number): void {
    if (seq > this.delivered) this.delivered = seq;
    post({ t: 'delivered', seq: this.delivered });
    if (this.foreignPending) return;
    for (const w of [...this.flushWaiters]) {
      if (this.delivered >= w.seq) this.answerFlush(w.id, true);
    }
  }

  private repo(root: string): ArtifactRepository {
    let r = this.repos.get(root);
    if (!r) { r = artifactRepositoryFor(root, this.cfg); this.repos.set(root, r); }
    return r;
  }

  // -------------------------------------------------------------------------------------------------------
  // Flush
  // -------------------------------------------------------------------------------------------------------
  private flush(id: number, seq: number, timeoutMs: number, persist: boolean): void {
    if (this.delivered >= seq && !this.foreignPending) { this.answerFlush(id, true); return; }
    const timer = setTimeout(() => this.answerFlush(id, false), timerMs(timeoutMs));
    this.flushWaiters.push({ id, seq, timer, persist });
    this.kick();
  }

  private answerFlush(id: number, complete: boolean): void {
    const i = this.flushWaiters.findIndex((w) => w.id === id);
    const w = i >= 0 ? this.flushWaiters.splice(i, 1)[0] : undefined;
    if (w) clearTimeout(w.timer);
    let undelivered = emptyCounts();
    if (!complete) {
      // Past the deadline: make sure everything is on disk for the next tracker, then count it.
      if (w?.persist && this.queue.length) {
        this.spoolItems(this.queue);
        this.queue = [];
        this.spooling = true;
      }
      for (const it of this.queue) countOp(undelivered, remaining(it));
      const sp = this.spool.pending();
      undelivered = addCounts(undelivered, sp);
    }
    const report: FlushReport = {
      complete,
      undelivered,
      dropped: { ...this.spool.dropped },
      errors: this.errors.splice(0),
      spoolDir: complete || this.spool.isEmpty ? null : this.spool.dir,
      uploaded: this.uploaded.splice(0),
    };
    post({ t: 'flushed', id, report });
  }

  // -------------------------------------------------------------------------------------------------------
  // Requests
  // -------------------------------------------------------------------------------------------------------
  private async request(id: number, method: string, args: unknown[]): Promise<void> {
    try {
      const fn = (this.store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method];
      if (method === 'close') {
        if (this.retryTimer) clearTimeout(this.retryTimer);
        this.spool.release();
        await this.store.close();
        post({ t: 'res', id, value: null });
        return;
      }
      if (typeof fn !== 'function') throw new MlflowError(`unknown store method ${method}`);
      const value = await fn.apply(this.store, args);
      post({ t: 'res', id, value });
    } catch (e) {
      post({ t: 'res', id, error: serialize(e) });
    }
  }
}

function remaining(it: { op: SpoolOp; mOff: number; pOff: number; tOff: number }): SpoolOp {
  const op = it.op;
  if (op.k !== 'log' || (it.mOff === 0 && it.pOff === 0 && it.tOff === 0)) return op;
  return { ...op, metrics: op.metrics.slice(it.mOff), params: op.params.slice(it.pOff), tags: op.tags.slice(it.tOff) };
}

function addCounts(a: PendingCounts, b: PendingCounts): PendingCounts {
  return { metrics: a.metrics + b.metrics, params: a.params + b.params, tags: a.tags + b.tags, artifacts: a.artifacts + b.artifacts, runEnds: a.runEnds + b.runEnds };
}

function post(m: FromWorker): void {
  parentPort!.postMessage(m);
}

// ---------------------------------------------------------------------------------------------------------
if (parentPort) {
  const w = new TrackerWorker(workerData as WorkerInit);
  const pending: ToWorker[] = [];
  let started = false;
  parentPort.on('message', (m: ToWorker) => (started ? w.onMessage(m) : pending.push(m)));
  w.start().then(
    () => {
      started = true;
      post({ t: 'ready' });
      for (const m of pending.splice(0)) w.onMessage(m);
    },
    (e) => post({ t: 'ready', error: serialize(e) }),
  );
}

