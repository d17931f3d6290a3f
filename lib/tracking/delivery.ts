// The worker's delivery of logging operations: an in-memory queue in order, batched into the store's declared
// limits (batching.ts), retried with backoff, overflowing to the bounded on-disk spool while the backend is down
// or slower than the training, and the flush waiters answered when their sequence number is delivered.
// What it holds in memory is written ahead to the spool's journal (spool.ts) so that a killed process loses
// none of its params, tags, run ends and uploads, and metric points at most writeAheadMs old.
import type { TrackerConfig } from '../config.js';
import { artifactRepositoryFor, fingerprintSync, type ArtifactRepository, type UploadedArtifact } from './artifacts.js';
import { applyTakes, nextBatch, queueItem, remaining, type QueueItem } from './batching.js';
import { invalidParameter, isRetryable, toSafeError } from './errors.js';
import type { FlushReport, FromWorker } from './protocol.js';
import { backoffMs, timerMs } from './rest/http.js';
import { Spool, addCounts, countOp, emptyCounts, type SpoolOp } from './spool.js';
import type { LogBatch, RunStatus, TrackingStore } from './types.js';

interface Refusal { what: string; message: string }

const batchSize = (b: LogBatch) => b.metrics.length + b.params.length + b.tags.length;

/** "metric 'loss' (step 3)", "param 'lr'", or "12 item(s)" (what a refusal is about). */
function describeBatch(b: LogBatch): string {
  if (batchSize(b) > 1) return `${b.metrics.length} metric point(s), ${b.params.length} param(s), ${b.tags.length} tag(s)`;
  if (b.metrics.length) return `metric '${b.metrics[0]!.key}' (step ${b.metrics[0]!.step})`;
  if (b.params.length) return `param '${b.params[0]!.key}'`;
  return b.tags.length ? `tag '${b.tags[0]!.key}'` : 'empty batch';
}

/** A batch cut into two halves (params, tags, then metrics, in order). */
function splitBatch(b: LogBatch): [LogBatch, LogBatch] {
  const all = [...b.params.map((p) => ['p', p] as const), ...b.tags.map((t) => ['t', t] as const), ...b.metrics.map((m) => ['m', m] as const)];
  const half = Math.ceil(all.length / 2);
  const make = (part: typeof all): LogBatch => ({
    runId: b.runId,
    params: part.flatMap(([k, v]) => (k === 'p' ? [v] : [])),
    tags: part.flatMap(([k, v]) => (k === 't' ? [v] : [])),
    metrics: part.flatMap(([k, v]) => (k === 'm' ? [v] : [])),
  });
  return [make(all.slice(0, half)), make(all.slice(half))];
}

/** Operations (chunks of up to 4096 points) held in memory before overflowing to the spool. */
const MAX_QUEUED_OPS = 256;
/** Operations held in memory when the spool cannot be written (a full disk) before their points are dropped. */
const MAX_HELD_OPS = 4096;

interface FlushWaiter { id: number; seq: number; timer: NodeJS.Timeout; persist: boolean }

export class Delivery {
  private readonly spool: Spool;
  private queue: QueueItem[] = [];
  private delivered = 0; // highest seq fully handled, in order
  /** Highest seq taken from the tracker. */
  private lastSeq = 0;
  /** Timestamp of the latest system metric point per run: a run's end is never before it (see deliverHead). */
  private readonly lastLocalPoint = new Map<string, number>();
  private spooling = false;
  /** Highest seq written to the spool by this tracker. */
  private spooledSeq = 0;
  /** Operations adopted from an earlier tracker's spool are not delivered yet (flush waits for them too). */
  private foreignPending = false;
  private wake: (() => void) | null = null;
  private failures = 0;
  private errors: string[] = [];
  private uploaded: UploadedArtifact[] = [];
  private flushWaiters: FlushWaiter[] = [];
  private repos = new Map<string, ArtifactRepository>();
  private retryTimer: NodeJS.Timeout | null = null;
  /** The last spool write failed (full disk): operations are held in `queue`, behind the spool. */
  private spoolWriteFailed = false;
  private spoolFailedAt = 0;
  /** Metric points dropped from memory while the spool could not be written. */
  private droppedInMemory = 0;
  /** Operations of metric points only, in memory and not yet written ahead (written within writeAheadMs). */
  private aheadPending: QueueItem[] = [];
  private aheadTimer: NodeJS.Timeout | null = null;
  /** The last write-ahead failed (reported once until one succeeds again). */
  private aheadFailed = false;

  constructor(private readonly store: TrackingStore, private readonly cfg: TrackerConfig, private readonly post: (m: FromWorker) => void) {
    this.spool = new Spool(cfg.spoolDir, cfg.trackingUri, cfg.spoolMaxBytes, (message, lost) => {
      if (lost) this.errors.push(message);
      this.post({ t: 'warn', message });
    });
  }

  /** Adopts what earlier trackers left in the spool, and starts delivering. */
  start(): void {
    if (this.spool.adoptOrphans() > 0) {
      this.spooling = true;
      this.foreignPending = true;
      this.post({ t: 'warn', message: `delivering operations left in the spool ${this.spool.root} by an earlier tracker` });
    }
    void this.loop();
  }

  /** Takes the tracker's next operations, in order. */
  enqueue(items: QueueItem[]): void {
    for (const it of items) {
      if (it.seq > this.lastSeq) this.lastSeq = it.seq;
      // Fix what an upload sends now: a late (spooled) upload of a file changed since is refused.
      if (it.op.k === 'art' && it.op.sha === undefined) {
        try { it.op.sha = fingerprintSync(it.op.local, it.op.dir); } catch { /* gone: the upload reports it */ }
      }
    }
    if (this.spooling) {
      // Operations held in memory after a failed spool write go to the spool first (order), or stay with these.
      if (this.queue.length) {
        // After a failed write, try the disk again at most once a second (not with every operation).
        if (this.spoolWriteFailed && Date.now() - this.spoolFailedAt < 1000) this.holdInMemory(items);
        else if (this.spoolItems([...this.queue, ...items])) this.queue = [];
        else this.holdInMemory(items);
      } else if (!this.spoolItems(items)) this.holdInMemory(items);
    } else {
      this.queue.push(...items);
      this.writeAhead(items);
      // A backend slower than the training for long: keep memory bounded, overflow to the (bounded) spool.
      if (this.queue.length > MAX_QUEUED_OPS) {
        this.spoolQueue();
        this.post({ t: 'warn', message: `tracking backend slower than logging: queue overflowed to the spool ${this.spool.dir}` });
      }
    }
    this.kick();
  }

  /**
   * Takes an operation the worker itself produced (system metrics), in order behind what the tracker sent: it
   * carries the tracker's highest sequence number so far, so flush() and the spool's bookkeeping are unchanged.
   */
  enqueueLocal(op: SpoolOp): void {
    if (op.k === 'log') for (const m of op.metrics) this.lastLocalPoint.set(op.runId, Math.max(this.lastLocalPoint.get(op.runId) ?? 0, m.timestamp));
    this.enqueue([queueItem(op, this.lastSeq)]);
  }

  /** Answers flush `id` once everything up to `seq` is delivered, or at `timeoutMs`. */
  flush(id: number, seq: number, timeoutMs: number, persist: boolean): void {
    if (this.delivered >= seq && !this.foreignPending) { this.answerFlush(id, true); return; }
    const timer = setTimeout(() => this.answerFlush(id, false), timerMs(timeoutMs));
    this.flushWaiters.push({ id, seq, timer, persist });
    this.kick();
  }

  /** Stops retrying and lets the next tracker adopt the spool. */
  stop(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.writeAheadNow();
    this.spool.release();
  }

  /**
   * Writes items that only memory holds to the spool's journal before they are delivered: at once when they
   * carry params, tags, a run end or an upload (with the metric points waiting before them, for order), else
   * within writeAheadMs — points stored before then are never written.
   */
  private writeAhead(items: QueueItem[]): void {
    let now = false;
    for (const it of items) {
      this.aheadPending.push(it);
      if (it.op.k !== 'log' || it.op.params.length || it.op.tags.length) now = true;
    }
    if (now || this.cfg.writeAheadMs <= 0) this.writeAheadNow();
    else this.aheadTimer ??= setTimeout(() => { this.aheadTimer = null; this.writeAheadNow(); }, timerMs(this.cfg.writeAheadMs));
  }

  private writeAheadNow(): void {
    if (this.aheadTimer) { clearTimeout(this.aheadTimer); this.aheadTimer = null; }
    const items = this.aheadPending.filter((it) => it.seq > this.delivered && it.seq > this.spooledSeq);
    this.aheadPending = [];
    if (!items.length) return;
    try {
      this.spool.writeAhead(items.map((it) => ({ ...it.op, q: it.seq, o: this.spool.id })));
      this.aheadFailed = false;
    } catch (e) {
      if (!this.aheadFailed) {
        const msg = `cannot write ahead to the spool ${this.spool.dir} (${(e as NodeJS.ErrnoException).code ?? toSafeError(e).message}): operations are delivered from memory, and a killed process loses those not yet delivered`;
        this.post({ t: 'warn', message: msg });
      }
      this.aheadFailed = true;
    }
  }

  /** Everything up to `seq` is stored or spooled: its write-ahead copy is not needed any more. */
  private covered(seq: number): void {
    if (this.aheadPending.length && this.aheadPending[this.aheadPending.length - 1]!.seq <= seq) this.aheadPending = [];
    this.spool.covered(seq);
  }

  private kick(): void {
    if (this.wake) { const w = this.wake; this.wake = null; w(); }
  }

  /** Writes items to the spool; false (and reported once) when the write failed — the caller keeps them. */
  private spoolItems(items: QueueItem[]): boolean {
    try {
      // Items partially delivered keep only their undelivered part.
      this.spool.append(items.map((it) => ({ ...remaining(it), q: it.seq, o: this.spool.id })));
    } catch (e) {
      if (!this.spoolWriteFailed) {
        const msg = `cannot write the spool ${this.spool.dir} (${(e as NodeJS.ErrnoException).code ?? toSafeError(e).message}): operations are kept in memory until the backend is back; what is still undelivered at close() is lost with this process`;
        this.errors.push(msg);
        this.post({ t: 'warn', message: msg });
      }
      this.spoolWriteFailed = true;
      this.spoolFailedAt = Date.now();
      return false;
    }
    this.spoolWriteFailed = false;
    this.spooledSeq = Math.max(this.spooledSeq, items.length ? items[items.length - 1]!.seq : 0);
    // Spooled in order after everything before it: the queue held all that was not delivered.
    this.covered(Math.max(this.spooledSeq, this.delivered));
    return true;
  }

  /**
   * Keeps items the spool could not take in memory, after those already held (delivered after the spool, in
   * order). Memory is bounded too: beyond MAX_HELD_OPS the oldest held operations lose their metric points
   * (counted as dropped); params, tags, run ends and uploads are kept.
   */
  private holdInMemory(items: QueueItem[]): void {
    this.queue.push(...items);
    for (let i = 0; this.queue.length > MAX_HELD_OPS && i < this.queue.length - MAX_HELD_OPS; i++) {
      const it = this.queue[i]!;
      if (it.op.k === 'log' && it.op.metrics.length > it.mOff) {
        this.droppedInMemory += it.op.metrics.length - it.mOff;
        // Free the points; the operation stays (with its params and tags) so that flush() sees its seq done.
        it.op = { ...it.op, metrics: [] };
        it.mOff = 0;
      }
    }
  }

  /** Moves the whole in-memory queue to the spool, which from now on delivers in order (if the spool takes it). */
  private spoolQueue(): void {
    if (this.spoolItems(this.queue)) this.queue = [];
    this.spooling = true;
  }

  private async loop(): Promise<void> {
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
          this.spoolQueue();
          this.post({ t: 'warn', message: `tracking backend unavailable (${toSafeError(e).message}); spooling to ${this.spool.dir}` });
        }
        const wait = backoffMs(this.failures++, 200, 5000);
        await new Promise<void>((r) => { this.retryTimer = setTimeout(r, wait); });
        this.retryTimer = null;
      }
    }
  }

  /** Delivers one operation or batch from the head of `items`; returns how many items completed. */
  private async deliverHead(items: QueueItem[]): Promise<number> {
    const head = items[0]!;
    try {
      if (head.op.k === 'log') {
        const nb = nextBatch(items, this.store.limits)!;
        await this.logBatchIsolating(nb.batch);
        return applyTakes(items, nb.takes);
      }
      if (head.op.k === 'end') {
        // A system metric point taken while the end was on its way to this thread (at most one sampling tick)
        // moves the end time to it, so that no point of a run lies after its end.
        const endTime = Math.max(head.op.endTime, this.lastLocalPoint.get(head.op.runId) ?? 0);
        await this.store.updateRun(head.op.runId, head.op.status as RunStatus, endTime);
        return 1;
      }
      if (head.op.k === 'inp') {
        for (const message of await this.store.logInputs(head.op.runId, head.op.datasets)) this.post({ t: 'warn', message });
        return 1;
      }
      const op = head.op;
      if (op.sha !== undefined) {
        let now: string | null = null;
        try { now = fingerprintSync(op.local, op.dir); } catch { now = null; }
        if (now !== op.sha) {
          throw invalidParameter(`${op.dir ? 'directory' : 'file'} changed (or removed) since logArtifact${op.dir ? 's' : ''}() (fingerprint then ${op.sha.slice(0, 12)}…, now ${now ? `${now.slice(0, 12)}…` : 'unreadable'}): not uploaded, so that the run never holds a later version than the one logged`);
        }
      }
      const repo = this.repo(op.root);
      const up = op.dir ? await repo.logArtifacts(op.local, op.path) : await repo.logArtifact(op.local, op.path);
      this.uploaded.push(...up);
      return 1;
    } catch (e) {
      if (isRetryable(e)) throw e;
      // Refused by the backend (or a vanished local file): drop it, report it at the next flush.
      const what = head.op.k === 'log' ? `log batch for run ${head.op.runId}` : head.op.k === 'end' ? `end of run ${head.op.runId}`
        : head.op.k === 'inp' ? `dataset inputs of run ${head.op.runId}` : `artifact '${head.op.local}'`;
      const msg = `${what}: ${toSafeError(e).message}`;
      this.errors.push(msg);
      this.post({ t: 'warn', message: msg });
      if (head.op.k === 'log') return applyTakes(items, nextBatch(items, this.store.limits)!.takes);
      return 1;
    }
  }

  /**
   * Stores a batch; when the store refuses it (not retryable), halves it until the refused items are alone, so
   * that one bad item (a param changed on a resumed run, a point an older version spooled) costs only itself:
   * each is reported, everything else is stored. A refusal of the whole batch for one reason (a deleted run)
   * is found in O(log n) calls and reported once. A retryable failure midway retries the whole batch later
   * (writes are idempotent).
   */
  private async logBatchIsolating(batch: LogBatch): Promise<void> {
    for (const r of await this.isolate(batch)) {
      const msg = `${r.what} of run ${batch.runId} refused: ${r.message}`;
      this.errors.push(msg);
      this.post({ t: 'warn', message: msg });
    }
  }

  /** The refused parts of `batch` (each with the store's reason); `all` when nothing of it was stored. */
  private async isolate(batch: LogBatch): Promise<Refusal[] & { all?: boolean }> {
    let message: string;
    try {
      await this.store.logBatch(batch);
      return [];
    } catch (e) {
      if (isRetryable(e)) throw e;
      message = toSafeError(e).message;
    }
    const whole = (): Refusal[] & { all?: boolean } => Object.assign([{ what: describeBatch(batch), message }], { all: true });
    if (batchSize(batch) <= 1) return whole();
    const [a, b] = splitBatch(batch);
    const ra = await this.isolate(a);
    if (ra.all && ra.length === 1 && ra[0]!.message === message) {
      // The first half failed as a whole for the same reason: probably the whole batch's (its run's) problem.
      try {
        await this.store.logBatch(b);
        return ra;
      } catch (e) {
        if (isRetryable(e)) throw e;
        if (toSafeError(e).message === message) return whole();
      }
    }
    const rb = await this.isolate(b);
    return Object.assign([...ra, ...rb], { all: ra.all === true && rb.all === true });
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
      // Our own spooled operations carry their sequence number: flush() need not wait for the rest.
      const items = seg.ops.slice(seg.start).map((op) => {
        const tagged = op as typeof op & { q?: number; o?: string };
        return queueItem(op, tagged.o === this.spool.id && typeof tagged.q === 'number' ? tagged.q : 0);
      });
      let pos = seg.start;
      while (items.length) {
        const n = await this.deliverHead(items);
        if (n > 0) {
          const done = items.splice(0, n);
          pos += n;
          this.spool.advance(seg.n, pos);
          const q = Math.max(...done.map((d) => d.seq));
          if (q > 0) this.markDelivered(q);
        }
      }
      this.spool.finish(seg.n);
    }
  }

  private markDelivered(seq: number): void {
    if (seq > this.delivered) this.delivered = seq;
    // In order: everything up to `delivered` is stored, or still in the spool behind it.
    this.covered(this.delivered);
    this.post({ t: 'delivered', seq: this.delivered });
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

  private answerFlush(id: number, complete: boolean): void {
    const i = this.flushWaiters.findIndex((w) => w.id === id);
    const w = i >= 0 ? this.flushWaiters.splice(i, 1)[0] : undefined;
    if (w) clearTimeout(w.timer);
    let undelivered = emptyCounts();
    if (!complete) {
      // Past the deadline: make sure everything is on disk for the next tracker, then count it.
      if (w?.persist && this.queue.length) this.spoolQueue();
      for (const it of this.queue) countOp(undelivered, remaining(it));
      undelivered = addCounts(undelivered, this.spool.pending());
    }
    const report: FlushReport = {
      complete,
      undelivered,
      dropped: { ...this.spool.dropped, metrics: this.spool.dropped.metrics + this.droppedInMemory },
      errors: this.errors.splice(0),
      spoolDir: complete || this.spool.isEmpty ? null : this.spool.dir,
      uploaded: this.uploaded.splice(0),
    };
    this.post({ t: 'flushed', id, report });
  }
}
