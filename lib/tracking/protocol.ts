// The one protocol between MLflowTracker (caller's thread) and its worker thread. Requests are derived from
// TrackingStore: a request names a store method and carries exactly that method's parameters, and its reply is
// that method's result — so `client.request('getRun', runId)` is checked against `TrackingStore.getRun` where
// it is sent (worker_client.ts), and the worker answers it through a `StoreApi`, which the store must satisfy
// (worker.ts). Logging travels as ordered, sequence-numbered operations; flush and close are their own messages.
import type { TrackerConfig } from '../config.js';
import type { UploadedArtifact } from './artifacts.js';
import type { WireMetrics } from './columns.js';
import { isMlflowErrorCode, isRetryable, MlflowError, toSafeError } from './errors.js';
import { emptyCounts, type PendingCounts, type SpoolOp } from './spool.js';
import type { TrackingStore } from './types.js';

export interface WorkerInit {
  config: TrackerConfig;
}

/** Store methods the tracker may call through the worker (opening and closing the store are the worker's own). */
export type StoreMethod = Exclude<keyof TrackingStore, 'kind' | 'limits' | 'open' | 'close' | 'defaultArtifactLocation'>;
/** The arguments of each request: the store method's parameters. */
export type StoreArgs = { [K in StoreMethod]: Parameters<TrackingStore[K]> };
/** The reply to each request: what the store method resolves to. */
export type StoreReply = { [K in StoreMethod]: Awaited<ReturnType<TrackingStore[K]>> };
/** What answers requests in the worker: a TrackingStore is one (checked where the worker assigns it). */
export type StoreApi = { [K in StoreMethod]: (...args: StoreArgs[K]) => Promise<StoreReply[K]> };
/** A request for one store method (K) — or, with K left open, any of them (a union discriminated by `method`). */
export type StoreRequest<K extends StoreMethod = StoreMethod> = { [P in K]: { t: 'req'; id: number; method: P; args: StoreArgs[P] } }[K];

/** An operation as sent by the tracker: metric points travel in columns (see columns.ts). */
export type WireOp = SpoolOp | { k: 'mlog'; runId: string; m: WireMetrics; params: [string, string][]; tags: [string, string][] };

/** Messages from the tracker to the worker. */
export type ToWorker =
  | { t: 'ops'; seq: number; ops: WireOp[] }
  | StoreRequest
  /** Answered with 'flushed' when every operation up to `seq` is delivered, or at `timeoutMs`. */
  | { t: 'flush'; id: number; seq: number; timeoutMs: number; persist: boolean }
  /**
   * Starts (runId) or stops (null) the system metrics monitor of a run (system_metrics.ts); `resume` continues its
   * steps; `nodeId` overrides the tracker's systemMetricsNodeId (another node of a multi-node job).
   */
  | { t: 'sysmetrics'; runId: string | null; resume: boolean; nodeId?: string }
  /** Stops retrying, releases the spool, closes the store; answered with an empty 'res'. */
  | { t: 'close'; id: number };

/** Messages from the worker to the tracker. */
export type FromWorker =
  | { t: 'ready'; error?: SerializedError }
  | { t: 'res'; id: number; value?: StoreReply[StoreMethod] | null; error?: SerializedError }
  | { t: 'flushed'; id: number; report: FlushReport }
  | { t: 'delivered'; seq: number }
  | { t: 'warn'; message: string };

export interface SerializedError { name: string; message: string; code?: string; retryable?: boolean; stack?: string }

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

/** A report with nothing counted: complete when there are no errors, else "not delivered, because…". */
export function emptyFlushReport(errors: string[] = []): FlushReport {
  return { complete: errors.length === 0, undelivered: emptyCounts(), dropped: emptyCounts(), errors, spoolDir: null, uploaded: [] };
}

/** An error as it crosses the thread boundary (secrets removed; `retryable` judged where the driver's codes are known). */
export function serializeError(e: unknown): SerializedError {
  const s = toSafeError(e);
  const code = (s as { code?: unknown }).code;
  return { name: s.name, message: s.message, code: typeof code === 'string' ? code : undefined, retryable: isRetryable(e), stack: s.stack };
}

/**
 * The tracker's side: an MlflowError with MLflow's code — a driver's code (ECONNREFUSED, a SQLSTATE) becomes
 * TEMPORARILY_UNAVAILABLE when retryable, else INTERNAL_ERROR; an error without a code stays a plain Error.
 */
export function deserializeError(e: SerializedError): Error {
  const retryable = e.retryable === true;
  if (isMlflowErrorCode(e.code)) return new MlflowError(e.message, e.code, { retryable });
  if (e.code !== undefined) return new MlflowError(e.message, retryable ? 'TEMPORARILY_UNAVAILABLE' : 'INTERNAL_ERROR', { retryable });
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

// ---------------------------------------------------------------------------------------------------------
// Compile-time checks of the protocol: `tsc -p tsconfig.json` fails if any of these mistakes type-checks.
// ---------------------------------------------------------------------------------------------------------
type Request<K extends StoreMethod, A extends StoreArgs[K]> = { method: K; args: A };
// @ts-expect-error getRun takes a run id (a string)
type _WrongArgument = Request<'getRun', [42]>;
// @ts-expect-error logBatch takes one LogBatch
type _MissingArgument = Request<'logBatch', []>;
// @ts-expect-error not a store method
type _UnknownMethod = Request<'dropExperiment', []>;
// @ts-expect-error closing the store is the 'close' message, not a request
type _CloseIsNoRequest = Request<'close', []>;
type Reply<K extends StoreMethod, R extends StoreReply[K]> = R;
// @ts-expect-error getRun replies with a Run, not a string
type _WrongReply = Reply<'getRun', string>;
