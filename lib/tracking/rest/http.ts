// A small HTTP client over node:http(s): timeouts, insecure TLS on request, streaming bodies, and MLflow's
// retry rule (connection errors, 429 and 5xx, exponential backoff with jitter).
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { isRetryableStatus, MlflowError, type MlflowErrorCode } from '../errors.js';

export interface HttpOptions {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: string | Buffer | (() => Readable);
  timeoutMs: number;
  insecureTls?: boolean;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

const agents = {
  http: new http.Agent({ keepAlive: true, maxSockets: 8 }),
  https: new https.Agent({ keepAlive: true, maxSockets: 8 }),
  insecure: new https.Agent({ keepAlive: true, maxSockets: 8, rejectUnauthorized: false }),
};

/**
 * Node's timers hold at most 2³¹−1 ms (~24.8 days) and turn anything longer into 1 ms: every configured
 * timeout (MLFLOW_HTTP_REQUEST_TIMEOUT, HEIMDALL_MLFLOW_CLOSE_TIMEOUT, a close() deadline) goes through this,
 * so a huge value means "practically never", not "at once".
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;
export function timerMs(ms: number): number {
  return Number.isFinite(ms) ? Math.min(Math.max(0, ms), MAX_TIMER_MS) : ms > 0 ? MAX_TIMER_MS : 0;
}

export function httpRequest(o: HttpOptions): Promise<HttpResponse> {
  return new Promise((resolvePromise, reject) => {
    const u = new URL(o.url);
    const isHttps = u.protocol === 'https:';
    const mod = isHttps ? https : http;
    const req = mod.request(
      u,
      {
        method: o.method,
        headers: o.headers,
        agent: isHttps ? (o.insecureTls ? agents.insecure : agents.https) : agents.http,
        timeout: timerMs(o.timeoutMs),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error(`HTTP request timed out after ${o.timeoutMs} ms: ${o.method} ${u.origin}${u.pathname}`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    if (typeof o.body === 'function') {
      const stream = o.body();
      stream.on('error', (e) => req.destroy(e));
      stream.pipe(req);
    } else {
      req.end(o.body);
    }
  });
}

/** Converts an MLflow REST error response into an MlflowError (retryable for 429 and 5xx). */
export function errorFromResponse(res: HttpResponse, what: string): MlflowError {
  let code: MlflowErrorCode = 'INTERNAL_ERROR';
  let message = res.body.toString('utf8').slice(0, 2000);
  try {
    const j = JSON.parse(message) as { error_code?: string; message?: string };
    if (j.error_code) code = j.error_code as MlflowErrorCode;
    if (j.message) message = j.message;
  } catch {
    /* not JSON */
  }
  if (res.status === 429) code = 'REQUEST_LIMIT_EXCEEDED';
  const retryable = isRetryableStatus(res.status);
  return new MlflowError(`${what} failed (HTTP ${res.status} ${code}): ${message}`, code, { retryable, httpStatus: res.status });
}

export function backoffMs(attempt: number, baseMs = 500, maxMs = 30_000): number {
  const exp = Math.min(maxMs, baseMs * 2 ** attempt);
  return exp / 2 + Math.random() * (exp / 2);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, timerMs(ms)));
