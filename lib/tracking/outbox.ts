// What the tracker has logged but not yet handed to its worker: metric points in columns, params and tags of
// the current run, then whole operations (run ends, artifact uploads) in order. Sent on the next turn of the
// event loop (or at once when it grows), numbered so that a flush can wait for exactly what came before it.
import { MetricColumns } from './columns.js';
import type { FlushReport, WireOp } from './protocol.js';
import type { SpoolOp } from './spool.js';
import type { WorkerClient } from './worker_client.js';

/** How many operations may wait before logMetrics sends them without waiting for the next turn. */
const SEND_AT_OPS = 16;

interface RunBuffer { runId: string; metrics: MetricColumns; params: [string, string][]; tags: [string, string][] }

export class Outbox {
  private buf: RunBuffer | null = null;
  private bufSize = 0;
  private ops: WireOp[] = [];
  private transfer: ArrayBuffer[] = [];
  private scheduled = false;
  /** Sequence number of the last operation handed to the worker. */
  private seq = 0;

  constructor(private readonly client: WorkerClient) {}

  /** True while anything logged is not delivered yet (buffered here, or in the worker). */
  get pending(): boolean {
    return this.bufSize > 0 || this.ops.length > 0 || this.seq > this.client.deliveredSeq;
  }

  /** Buffers one metric point (already validated); `sendSoon()` after the call's last one. */
  addMetric(runId: string, key: string, value: number, step: number, timestamp: number): void {
    const cols = this.buffer(runId).metrics;
    cols.push(key, value, step, timestamp);
    this.bufSize++;
    if (cols.full) this.seal();
  }

  /** Buffers params and tags (already validated); `sendSoon()` after. */
  addParamsAndTags(runId: string, params: readonly [string, string][], tags: readonly [string, string][]): void {
    const buf = this.buffer(runId);
    buf.params.push(...params);
    buf.tags.push(...tags);
    this.bufSize += params.length + tags.length;
  }

  /** Sends what is buffered on the next turn of the event loop — or now, when many operations wait. */
  sendSoon(): void {
    if (this.ops.length >= SEND_AT_OPS) this.send();
    else this.schedule();
  }

  /** Queues a run end or an artifact upload after everything buffered before it. */
  add(op: SpoolOp): void {
    this.seal();
    this.ops.push(op);
    this.schedule();
  }

  /** Sends everything and waits for its delivery (see WorkerClient.flush). */
  flush(timeoutMs: number, persist: boolean): Promise<FlushReport> {
    this.send();
    return this.client.flush(this.seq, timeoutMs, persist);
  }

  private buffer(runId: string): RunBuffer {
    if (!this.buf || this.buf.runId !== runId) {
      this.seal();
      this.buf = { runId, metrics: new MetricColumns(), params: [], tags: [] };
    }
    return this.buf;
  }

  /** Moves the current metric/param/tag buffer into the operations to send. */
  private seal(): void {
    const b = this.buf;
    if (b && (b.metrics.n || b.params.length || b.tags.length)) {
      const { wire, transfer } = b.metrics.toWire();
      this.ops.push({ k: 'mlog', runId: b.runId, m: wire, params: b.params, tags: b.tags });
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
    if (!this.ops.length) return;
    if (!this.client.spawned) {
      // The worker is still starting: keep the order, retry shortly.
      void this.client.start().then(() => this.send(), () => {});
      return;
    }
    const ops = this.ops;
    const transfer = this.transfer;
    this.ops = [];
    this.transfer = [];
    this.seq += ops.length;
    this.client.sendOps(this.seq, ops, transfer);
  }
}
