// MLflow's validation rules (mlflow/utils/validation.py of the pinned version), applied on the caller's
// side before anything is enqueued, so that a batch never half-lands in the store.
import { posix } from 'node:path';
import { invalidParameter } from './errors.js';
import type { BatchLimits, Metric, Param, Tag } from './types.js';

export const MAX_METRICS_PER_BATCH = 1000;
export const MAX_PARAMS_TAGS_PER_BATCH = 100;
export const MAX_ENTITIES_PER_BATCH = 1000;
/** logBatch limits of MLflow's REST API (mlflow/utils/validation.py). */
export const REST_BATCH_LIMITS: Readonly<BatchLimits> = {
  metrics: MAX_METRICS_PER_BATCH, params: MAX_PARAMS_TAGS_PER_BATCH, tags: MAX_PARAMS_TAGS_PER_BATCH, total: MAX_ENTITIES_PER_BATCH,
};
/** What the SQL stores take in one logBatch transaction (they chunk their INSERTs themselves). */
export const SQL_BATCH_LIMITS: Readonly<BatchLimits> = { metrics: 10_000, params: 10_000, tags: 10_000, total: 10_000 };
export const MAX_ENTITY_KEY_LENGTH = 250;
export const MAX_PARAM_VAL_LENGTH = 6000;
export const MAX_TAG_VAL_LENGTH = 8000;
export const MAX_EXPERIMENT_TAG_VAL_LENGTH = 20000;
export const MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH = 100_000;
export const MAX_REGISTERED_MODEL_ALIAS_LENGTH = 255;
/** What SQL stores in place of ±Infinity. */
export const SQL_FLOAT_MAX = 1.7976931348623157e308;

// Python's \w is Unicode-aware: letters, digits and underscore of any script.
const NAME_RE = /^[/\p{L}\p{N}\p{M}_.\- :]*$/u;
const ALIAS_RE = /^[\p{L}\p{N}\p{M}_-]*$/u;
const ALIAS_VERSION_RE = /^[vV]\d+$/;

function badChars(kind: string, name: string): Error {
  return invalidParameter(
    `Invalid value ${JSON.stringify(name)} for ${kind}. Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/).`,
  );
}

/** MLflow's `path_not_unique`: the key must not normalise to another path. */
export function pathNotUnique(name: string): boolean {
  const pyNorm = pyNormpath(name);
  return pyNorm !== name || pyNorm === '.' || pyNorm.startsWith('..') || pyNorm.startsWith('/');
}

/** posixpath.normpath of Python (keeps a leading '//', strips trailing '/'). */
function pyNormpath(p: string): string {
  if (p === '') return '.';
  let initial = p.startsWith('/') ? 1 : 0;
  if (initial && p.startsWith('//') && !p.startsWith('///')) initial = 2;
  const comps = p.split('/');
  const out: string[] = [];
  for (const c of comps) {
    if (c === '' || c === '.') continue;
    if (c !== '..' || (!initial && out.length === 0) || (out.length > 0 && out[out.length - 1] === '..')) out.push(c);
    else if (out.length > 0) out.pop();
  }
  let s = out.join('/');
  if (initial) s = '/'.repeat(initial) + s;
  return s || '.';
}

/** Validates a metric/param/tag key; `kind` names it in the error. */
export function validateKey(kind: 'metric' | 'param' | 'tag', key: unknown): string {
  if (typeof key !== 'string' || key.length === 0) throw invalidParameter(`Missing ${kind} key. A key name must be provided.`);
  if (!NAME_RE.test(key)) throw badChars(`${kind} key`, key);
  if (pathNotUnique(key)) {
    throw invalidParameter(
      `Invalid value ${JSON.stringify(key)} for ${kind} key. Names may be treated as files in certain cases, and must not resolve to other names when treated as such. This name would resolve to '${pyNormpath(key)}'`,
    );
  }
  if (key.length > MAX_ENTITY_KEY_LENGTH) throw invalidParameter(`${kind} key '${key.slice(0, 50)}…' exceeds the maximum length of ${MAX_ENTITY_KEY_LENGTH}`);
  return key;
}

export interface ValidationWarning { (message: string): void }

/** MLflow ≥ 2.11 truncates long param/tag values (with a warning) instead of failing. */
function truncate(kind: string, key: string, value: string, limit: number, warn?: ValidationWarning): string {
  if (value.length <= limit) return value;
  warn?.(`${kind} '${key}' value (${value.length} characters) is truncated to ${limit} characters to meet the length limit.`);
  return value.slice(0, limit);
}

/**
 * A metric point's timestamp as MLflow stores it: milliseconds as a nonnegative 64-bit integer. A fractional
 * one (`performance.now()`, `Date.now() / 1`) is truncated, as Python's `int()` does; anything else (negative,
 * NaN, ±Infinity, not a number, beyond 2^53) is refused here, at the call, never in the middle of a batch.
 */
export function metricTimestamp(key: string, timestamp: unknown): number {
  if (typeof timestamp !== 'number' || !Number.isFinite(timestamp) || timestamp < 0 || timestamp > Number.MAX_SAFE_INTEGER) {
    throw invalidParameter(`Invalid timestamp ${String(timestamp)} for metric '${key}': must be a nonnegative integer (ms since the epoch)`);
  }
  return Math.floor(timestamp);
}

/**
 * Checks one metric point (key, value, step, timestamp) as MLflow does and returns it normalised: the value is
 * any number (NaN and ±Infinity are legal, stored as MLflow's SQL store stores them), the step a 64-bit integer
 * (a fractional step is refused, like MLflow's "Step must be a valid long"), the timestamp per metricTimestamp().
 */
export function validateMetric(key: string, value: unknown, timestamp: unknown, step: unknown): Metric {
  validateKey('metric', key);
  if (typeof value !== 'number') {
    throw invalidParameter(`Got invalid value ${String(value)} for metric '${key}'. Please specify value as a valid double (64-bit floating point)`);
  }
  if (typeof step !== 'number' || !Number.isSafeInteger(step)) throw invalidParameter(`Invalid step ${String(step)} for metric '${key}': must be an integer (64-bit)`);
  return { key, value, timestamp: metricTimestamp(key, timestamp), step };
}

export function validateParam(key: string, value: string, warn?: ValidationWarning): Param {
  validateKey('param', key);
  return { key, value: truncate('Param', key, value, MAX_PARAM_VAL_LENGTH, warn) };
}

export function validateTag(key: string, value: string, warn?: ValidationWarning): Tag {
  validateKey('tag', key);
  return { key, value: truncate('Tag', key, value, MAX_TAG_VAL_LENGTH, warn) };
}

export function validateAlias(alias: string, forSet: boolean): void {
  if (!ALIAS_RE.test(alias) || alias.length === 0) {
    throw invalidParameter(`Invalid alias name: '${alias}'. Alias names may only contain alphanumerics, underscores and dashes.`);
  }
  if (alias.length > MAX_REGISTERED_MODEL_ALIAS_LENGTH) throw invalidParameter(`Alias '${alias.slice(0, 40)}…' exceeds the maximum length of ${MAX_REGISTERED_MODEL_ALIAS_LENGTH}`);
  if (forSet && (alias.toLowerCase() === 'latest' || ALIAS_VERSION_RE.test(alias))) {
    throw invalidParameter(`'${alias}' alias name (case insensitive) is reserved.`);
  }
}

export function validateModelName(name: string): void {
  if (typeof name !== 'string' || name.trim() === '') throw invalidParameter('Registered model name cannot be empty.');
  if (name.includes('/') || name.includes(':')) throw invalidParameter(`Invalid model name: '${name}' (no '/' or ':')`);
}

/** Turns any value into MLflow's param string: strings as-is, numbers/booleans with String(), others JSON. */
export function paramValueToString(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v instanceof Date) return v.toISOString();
  return JSON.stringify(v);
}

/**
 * Flattens nested plain objects with '/' (`{opt: {lr: 1}}` → `opt/lr`); arrays and other complex values are
 * serialised to JSON, like the reference tracker.
 */
export function flattenParams(obj: Record<string, unknown>, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}/${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype && Object.keys(v).length > 0) {
      flattenParams(v as Record<string, unknown>, key, out);
    } else {
      out[key] = paramValueToString(v);
    }
  }
  return out;
}

/** NaN → (0, is_nan), ±Inf → ±max double: what MLflow's SQL store writes. */
export function sanitizeMetricValue(v: number): { value: number; isNan: boolean } {
  if (Number.isNaN(v)) return { value: 0, isNan: true };
  if (v === Infinity) return { value: SQL_FLOAT_MAX, isNan: false };
  if (v === -Infinity) return { value: -SQL_FLOAT_MAX, isNan: false };
  return { value: v, isNan: false };
}

/** Rejects artifact paths that escape the run (`..`, absolute, backslashes). Returns the normalised path. */
export function validateArtifactPath(p: string | undefined): string {
  if (p === undefined || p === '' || p === '.') return '';
  if (p.startsWith('/') || /^[a-zA-Z]:[\\/]/.test(p) || p.includes('\\') || p.includes('\0')) {
    throw invalidParameter(`Invalid artifact path '${p}': must be relative to the run's artifact root`);
  }
  const norm = posix.normalize(p).replace(/\/+$/, '');
  if (norm === '..' || norm.startsWith('../') || norm.split('/').includes('..')) {
    throw invalidParameter(`Invalid artifact path '${p}': it escapes the run's artifact root`);
  }
  return norm === '.' ? '' : norm;
}
