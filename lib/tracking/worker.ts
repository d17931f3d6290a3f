// The tracker's worker thread: owns the store and the artifact repositories, delivers logging operations
// (delivery.ts: batches within the store's limits, retries, spools while the backend is down) and answers the
// tracker's requests — the messages of protocol.ts, dispatched here and nowhere else.
import { parentPort, workerData } from 'node:worker_threads';
import { wireToMetrics } from './columns.js';
import { queueItem } from './batching.js';
import { Delivery } from './delivery.js';
import { serializeError, type FromWorker, type StoreApi, type StoreMethod, type StoreReply, type StoreRequest, type ToWorker, type WorkerInit } from './protocol.js';
import type { SpoolOp } from './spool.js';
import { openStore } from './stores.js';
import { SystemMetricsSwitch } from './system_metrics.js';
import type { TrackingStore } from './types.js';

class TrackerWorker {
  private readonly systemMetrics: SystemMetricsSwitch;

  private constructor(private readonly store: TrackingStore, private readonly api: StoreApi, private readonly delivery: Delivery, config: WorkerInit['config']) {
    this.systemMetrics = new SystemMetricsSwitch(store, config, delivery, (message) => post({ t: 'warn', message }));
  }

  static async start(init: WorkerInit): Promise<TrackerWorker> {
    const store = await openStore(init.config);
    const delivery = new Delivery(store, init.config, post);
    delivery.start();
    // Every request the protocol can carry is answered by the store: tsc checks here that it can.
    const api: StoreApi = store;
    return new TrackerWorker(store, api, delivery, init.config);
  }

  onMessage(m: ToWorker): void {
    switch (m.t) {
      case 'ops': {
        const first = m.seq - m.ops.length + 1;
        this.delivery.enqueue(m.ops.map((w, i) => {
          const op: SpoolOp = w.k === 'mlog' ? { k: 'log', runId: w.runId, metrics: wireToMetrics(w.m), params: w.params, tags: w.tags } : w;
          return queueItem(op, first + i);
        }));
        break;
      }
      case 'req':
        void this.answer(m);
        break;
      case 'flush':
        this.delivery.flush(m.id, m.seq, m.timeoutMs, m.persist);
        break;
      case 'sysmetrics':
        void this.systemMetrics.switchTo(m.runId, m.resume, m.nodeId);
        break;
      case 'close':
        void this.close(m.id);
        break;
    }
  }

  /** Calls the store method a request names with its arguments (typed by the request's method). */
  private async answer<K extends StoreMethod>(req: StoreRequest<K>): Promise<void> {
    try {
      const value: StoreReply[K] = await this.api[req.method](...req.args);
      post({ t: 'res', id: req.id, value });
    } catch (e) {
      post({ t: 'res', id: req.id, error: serializeError(e) });
    }
  }

  private async close(id: number): Promise<void> {
    try {
      this.systemMetrics.stop();
      this.delivery.stop();
      await this.store.close();
      post({ t: 'res', id, value: null });
    } catch (e) {
      post({ t: 'res', id, error: serializeError(e) });
    }
  }
}

function post(m: FromWorker): void {
  parentPort!.postMessage(m);
}

// ---------------------------------------------------------------------------------------------------------
if (parentPort) {
  const pending: ToWorker[] = [];
  let worker: TrackerWorker | null = null;
  parentPort.on('message', (m: ToWorker) => (worker ? worker.onMessage(m) : pending.push(m)));
  TrackerWorker.start(workerData as WorkerInit).then(
    (w) => {
      worker = w;
      post({ t: 'ready' });
      for (const m of pending.splice(0)) w.onMessage(m);
    },
    (e) => post({ t: 'ready', error: serializeError(e) }),
  );
}
