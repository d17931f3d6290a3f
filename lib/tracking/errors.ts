import { redact } from '../config.js';
import { HeimdallError, type MlflowErrorCode } from '../errors.js';

export type { MlflowErrorCode };

const MLFLOW_CODES: ReadonlySet<string> = new Set<MlflowErrorCode>([
  'INVALID_PARAMETER_VALUE', 'RESOURCE_ALREADY_EXISTS', 'RESOURCE_DOES_NOT_EXIST', 'REQUEST_LIMIT_EXCEEDED',
  'INTERNAL_ERROR', 'TEMPORARILY_UNAVAILABLE', 'BAD_REQUEST', 'INVALID_STATE',
]);

/** True for MLflow's error codes (as opposed to a driver's: ECONNREFUSED, a SQLSTATE…). */
export function isMlflowErrorCode(code: unknown): code is MlflowErrorCode {
  return typeof code === 'string' && MLFLOW_CODES.has(code);
}

/** An error from a tracking store. `retryable` is true for connection problems, 429 and 5xx. */
export class MlflowError extends HeimdallError<MlflowErrorCode> {
  readonly retryable: boolean;
  readonly httpStatus?: number;
  constructor(message: string, code: MlflowErrorCode = 'INTERNAL_ERROR', opts: { retryable?: boolean; httpStatus?: number; cause?: unknown } = {}) {
    super(code, redact(message), opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'MlflowError';
    this.retryable = opts.retryable ?? false;
    if (opts.httpStatus !== undefined) this.httpStatus = opts.httpStatus;
  }
}

export const invalidParameter = (msg: string) => new MlflowError(msg, 'INVALID_PARAMETER_VALUE');
export const notFound = (msg: string) => new MlflowError(msg, 'RESOURCE_DOES_NOT_EXIST');
export const alreadyExists = (msg: string) => new MlflowError(msg, 'RESOURCE_ALREADY_EXISTS');

const RETRYABLE_NET_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CLOSED',
  // PostgreSQL: connection failure / admin shutdown / cannot connect now / too many connections
  '08000', '08003', '08006', '08001', '08004', '57P01', '57P02', '57P03', '53300', '40001', '40P01',
  // SQLite: busy/locked
  'SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_BUSY_SNAPSHOT',
]);

/**
 * HTTP statuses worth retrying: 429 and the server-side 5xx — not those that stay true on the next try (501 Not
 * Implemented, 505, 507 Insufficient Storage, 508, 510, 511): retrying a full disk only hides it.
 */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status <= 599 && ![501, 505, 507, 508, 510, 511].includes(status));
}

/** True for a local error that says the disk (or the quota) is full. */
export function isOutOfSpace(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** True when the error is a transient backend problem worth retrying (connection, 429, 5xx, busy DB). */
export function isRetryable(err: unknown): boolean {
  if (err instanceof MlflowError) return err.retryable;
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: unknown; message?: unknown; cause?: unknown; $metadata?: { httpStatusCode?: number }; name?: string };
  if (typeof e.code === 'string' && RETRYABLE_NET_CODES.has(e.code)) return true;
  const status = e.$metadata?.httpStatusCode;
  if (typeof status === 'number' && isRetryableStatus(status)) return true;
  if (typeof status === 'number' && status >= 500) return false; // 507 and the like: the same on the next try
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return true;
  const msg = typeof e.message === 'string' ? e.message : '';
  if (/Connection terminated|connect ECONNREFUSED|socket hang up|terminating connection|Client has encountered a connection error|timeout exceeded when trying to connect|Connection ended unexpectedly|fetch failed|other side closed/i.test(msg)) return true;
  if (e.cause && e.cause !== err) return isRetryable(e.cause);
  return false;
}

/** Converts anything thrown into an Error whose message has no secrets. */
export function toSafeError(err: unknown): Error {
  if (err instanceof Error) return redact(err);
  return new Error(redact(String(err)));
}
