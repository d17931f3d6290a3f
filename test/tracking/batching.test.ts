// The worker cuts queued logging into logBatch calls within the limits the store declares (TrackingStore.limits):
// MLflow's REST limits (1000 metrics, 100 params, 100 tags, 1000 in all) for the server, larger batches for SQL.
// (End to end against the real server: rest-auth-tls.test.ts logs 250 params, 150 tags and 2500 points.)
import { describe, expect, it } from 'vitest';
import { applyTakes, nextBatch, queueItem, remaining, type QueueItem } from '../../lib/tracking/batching.js';
import type { SpoolOp } from '../../lib/tracking/spool.js';
import type { BatchLimits, LogBatch } from '../../lib/tracking/types.js';
import { REST_BATCH_LIMITS, SQL_BATCH_LIMITS } from '../../lib/tracking/validation.js';

const log = (runId: string, nParams: number, nTags: number, nMetrics: number, from = 0): SpoolOp => ({
  k: 'log', runId,
  params: Array.from({ length: nParams }, (_, i) => [`p${from + i}`, String(i)] as [string, string]),
  tags: Array.from({ length: nTags }, (_, i) => [`t${from + i}`, String(i)] as [string, string]),
  metrics: Array.from({ length: nMetrics }, (_, i) => ({ key: 'loss', value: i, step: from + i, timestamp: 0 })),
});

/** Delivers `items` the way the worker does: batch from the head, record what it took, drop completed items. */
function deliverAll(items: QueueItem[], limits: BatchLimits): LogBatch[] {
  const batches: LogBatch[] = [];
  while (items.length) {
    const nb = nextBatch(items, limits);
    if (!nb) { items.shift(); continue; } // not a log operation: delivered on its own
    batches.push(nb.batch);
    items.splice(0, applyTakes(items, nb.takes));
  }
  return batches;
}

describe('batching within the store\'s declared limits', () => {
  it('REST limits: a large operation is split, no batch exceeds a limit, every entity goes once and in order', () => {
    const batches = deliverAll([queueItem(log('r1', 250, 150, 2500), 1)], REST_BATCH_LIMITS);
    for (const b of batches) {
      expect(b.params.length).toBeLessThanOrEqual(100);
      expect(b.tags.length).toBeLessThanOrEqual(100);
      expect(b.metrics.length).toBeLessThanOrEqual(1000);
      expect(b.params.length + b.tags.length + b.metrics.length).toBeLessThanOrEqual(1000);
    }
    expect(batches.flatMap((b) => b.params.map((p) => p.key))).toEqual(Array.from({ length: 250 }, (_, i) => `p${i}`));
    expect(batches.flatMap((b) => b.tags.map((t) => t.key))).toEqual(Array.from({ length: 150 }, (_, i) => `t${i}`));
    expect(batches.flatMap((b) => b.metrics.map((m) => m.step))).toEqual(Array.from({ length: 2500 }, (_, i) => i));
    expect(batches.length).toBeGreaterThanOrEqual(3);
  });

  it('SQL limits: the same operation is one batch; consecutive operations of a run merge, another run starts a new batch', () => {
    expect(deliverAll([queueItem(log('r1', 250, 150, 2500), 1)], SQL_BATCH_LIMITS)).toHaveLength(1);
    const merged = deliverAll([queueItem(log('r1', 0, 0, 10), 1), queueItem(log('r1', 0, 0, 10, 10), 2), queueItem(log('r2', 0, 0, 5), 3)], SQL_BATCH_LIMITS);
    expect(merged.map((b) => [b.runId, b.metrics.length])).toEqual([['r1', 20], ['r2', 5]]);
  });

  it('a param key already in the batch ends it (MLflow refuses a key twice in one batch)', () => {
    const twice = deliverAll([queueItem(log('r1', 1, 0, 0), 1), queueItem(log('r1', 1, 0, 0), 2)], SQL_BATCH_LIMITS);
    expect(twice.map((b) => b.params.map((p) => p.key))).toEqual([['p0'], ['p0']]);
  });

  it('an operation partly delivered keeps only what is left (what a retry or the spool gets)', () => {
    const item = queueItem(log('r1', 150, 0, 1200), 7);
    const nb = nextBatch([item], REST_BATCH_LIMITS)!;
    expect(applyTakes([item], nb.takes)).toBe(0);
    const rest = remaining(item);
    expect(rest.k === 'log' && [rest.params.length, rest.metrics.length]).toEqual([50, 1200 - (1000 - 100)]);
    expect(item.seq).toBe(7);
  });
});
