// Cutting queued logging operations into logBatch calls within the store's declared limits (TrackingStore.limits):
// consecutive log operations of one run are merged, a large one is split, and an operation partly delivered
// remembers how far it got (mOff/pOff/tOff), so that what is left — and only that — is retried or spooled.
import type { SpoolOp } from './spool.js';
import type { BatchLimits, LogBatch } from './types.js';

/** One operation waiting in the worker (from the tracker, or read back from the spool). */
export interface QueueItem {
  op: SpoolOp;
  /** How many of its metrics, params and tags are delivered already. */
  mOff: number;
  pOff: number;
  tOff: number;
  /** The tracker's sequence number of the operation; 0 for one adopted from an earlier tracker's spool. */
  seq: number;
}

export const queueItem = (op: SpoolOp, seq: number): QueueItem => ({ op, mOff: 0, pOff: 0, tOff: 0, seq });

/** The next batch from the head of `items` (consecutive log ops of one run within `limits`), and how much of each item it takes. */
export function nextBatch(items: readonly QueueItem[], limits: Readonly<BatchLimits>): { batch: LogBatch; takes: number[] } | null {
  const head = items[0];
  if (!head || head.op.k !== 'log') return null;
  const runId = head.op.runId;
  const batch: LogBatch = { runId, metrics: [], params: [], tags: [] };
  const takes: number[] = [];
  const paramKeys = new Set<string>();
  for (const it of items) {
    const op = it.op;
    if (op.k !== 'log' || op.runId !== runId) break;
    const room = () => limits.total - (batch.metrics.length + batch.params.length + batch.tags.length);
    // A param key twice in one batch is an error in MLflow: end the batch before it.
    if (op.params.slice(it.pOff).some((p) => paramKeys.has(p[0]))) break;
    const np = Math.min(op.params.length - it.pOff, limits.params - batch.params.length, room());
    for (const p of op.params.slice(it.pOff, it.pOff + np)) { batch.params.push({ key: p[0], value: p[1] }); paramKeys.add(p[0]); }
    const nt = Math.min(op.tags.length - it.tOff, limits.tags - batch.tags.length, room());
    for (const t of op.tags.slice(it.tOff, it.tOff + nt)) batch.tags.push({ key: t[0], value: t[1] });
    const nm = Math.min(op.metrics.length - it.mOff, limits.metrics - batch.metrics.length, room());
    for (let i = it.mOff; i < it.mOff + nm; i++) batch.metrics.push(op.metrics[i]!);
    takes.push(np, nt, nm);
    const complete = it.pOff + np === op.params.length && it.tOff + nt === op.tags.length && it.mOff + nm === op.metrics.length;
    if (!complete || room() <= 0) break;
  }
  return { batch, takes };
}

/** Records what a delivered batch took from `items`; returns how many items (from the head) are now complete. */
export function applyTakes(items: QueueItem[], takes: readonly number[]): number {
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

/** The part of an item's operation not delivered yet. */
export function remaining(it: QueueItem): SpoolOp {
  const op = it.op;
  if (op.k !== 'log' || (it.mOff === 0 && it.pOff === 0 && it.tOff === 0)) return op;
  return { ...op, metrics: op.metrics.slice(it.mOff), params: op.params.slice(it.pOff), tags: op.tags.slice(it.tOff) };
}
