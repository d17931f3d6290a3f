// Configuration of heimdall-torch: one zod schema per concern, read from constructor options, the process
// environment and a `.env` file (in that order of precedence). The tracker's schema lives here so that the
// Trainer/CLI configuration can extend it (`trackerConfigSchema.extend({...})`); so do the training options
// (engine, optimizer, schedule, Trainer, callbacks) — their defaults and enums are declared nowhere else.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { z } from 'zod';
import { HeimdallError } from './errors.js';
import { parseTrackingUri } from './tracking/schemes.js';

/** One error listing every invalid field. `issues` holds one line per problem (values redacted). */
export class ConfigError extends HeimdallError<'HEIMDALL_INVALID_CONFIG'> {
  readonly issues: string[];
  constructor(issues: string[], source = 'configuration') {
    super('HEIMDALL_INVALID_CONFIG', `Invalid ${source}:\n${issues.map((i) => `  - ${i}`).join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Secret redaction
// ---------------------------------------------------------------------------------------------------------
const secretValues = new Set<string>();
// A name holds a secret when its last segment is (or ends with) one of these words: `MLFLOW_TRACKING_PASSWORD`,
// `awsSecretAccessKey`, `db/password`, `api_key` — but not `max_tokens` or `token_dropout`.
const SECRET_KEY_RE = /(^|[_\-])(password|passwd|pwd|secret|secret_?access_?key|secret[_-]?key|private[_-]?key|token|access_?token|session_?token|auth_?token|api_?key|apikey|credentials?|authorization)$/i;
const SECRET_CAMEL_RE = /(Password|Passwd|Secret|SecretAccessKey|SecretKey|PrivateKey|Token|ApiKey|Credentials?)$/;

/** Remembers a secret value so that `redact()` removes it from any text from now on. */
export function registerSecret(value: string | undefined | null): void {
  if (typeof value === 'string' && value.length >= 4) secretValues.add(value);
}

/** True for names that hold secrets (`MLFLOW_TRACKING_PASSWORD`, `awsSecretAccessKey`, `token`…). */
export function isSecretKey(key: string): boolean {
  const last = key.split(/[/.]/).pop() ?? key;
  return SECRET_KEY_RE.test(last) || SECRET_CAMEL_RE.test(last);
}

// The user may be empty (`https://:token@host`, `postgresql://:pw@h/db`): the password is redacted all the same.
const URI_USERINFO_RE = /([a-z][a-z0-9+.-]*:\/\/)([^/@\s:]*):([^/@\s]+)@/gi;
const QUERY_SECRET_RE = /([?&](?:password|passwd|token|secret|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&\s'"]+/gi;
const AUTH_HEADER_RE = /\b(Bearer|Basic)\s+[A-Za-z0-9+/=._~-]{6,}/g;

/**
 * Returns `text` with every known secret replaced by `***`: passwords in URIs (`postgresql://u:***@h`),
 * secret query parameters, Authorization header values, and every value registered with `registerSecret`
 * (the configured passwords, tokens and keys). Objects are redacted recursively (secret-named fields too).
 */
export function redact<T>(value: T): T {
  if (typeof value === 'string') return redactString(value) as T;
  if (Array.isArray(value)) return value.map((v) => redact(v)) as T;
  if (value && typeof value === 'object' && !(value instanceof Date) && !(value instanceof Error)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      out[k] = isSecretKey(k) && v !== undefined && v !== null && v !== '' ? '***' : redact(v);
    }
    return out as T;
  }
  if (value instanceof Error) {
    const e = Object.create(Object.getPrototypeOf(value)) as Error;
    for (const k of Object.getOwnPropertyNames(value)) {
      const v = (value as unknown as Record<string, unknown>)[k];
      Object.defineProperty(e, k, { value: typeof v === 'string' ? redactString(v) : v, writable: true, configurable: true, enumerable: k !== 'stack' && k !== 'message' });
    }
    return e as T;
  }
  return value;
}

function redactString(s: string): string {
  let out = s.replace(URI_USERINFO_RE, '$1$2:***@').replace(QUERY_SECRET_RE, '$1***').replace(AUTH_HEADER_RE, '$1 ***');
  for (const secret of secretValues) {
    if (out.includes(secret)) out = out.split(secret).join('***');
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Tracker configuration
// ---------------------------------------------------------------------------------------------------------
const boolish = z.union([z.boolean(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'boolean') return v;
  const s = v.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(s)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
  ctx.addIssue({ code: 'custom', message: `expected a boolean (true/false/1/0), got '${v}'` });
  return z.NEVER;
});
const numberish = (min: number) =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const n = typeof v === 'number' ? v : Number(v.trim());
    if (!Number.isFinite(n) || n < min || (typeof v === 'string' && v.trim() === '')) {
      ctx.addIssue({ code: 'custom', message: `expected a number ≥ ${min}, got '${v}'` });
      return z.NEVER;
    }
    return n;
  });

// Which schemes name which store: the table in lib/tracking/schemes.ts, also read by createStore().
const trackingUri = z.string().trim().min(1).superRefine((v, ctx) => {
  const { problem } = parseTrackingUri(v);
  if (problem !== null) ctx.addIssue({ code: 'custom', message: redactString(problem) });
});
const artifactUri = z.string().trim().min(1).superRefine((v, ctx) => {
  if (/^s3:\/\/s3:\/\//i.test(v)) ctx.addIssue({ code: 'custom', message: `doubled s3:// prefix in '${v}'` });
  else if (/^s3:/i.test(v) && !/^s3:\/\/[^/]+/i.test(v)) ctx.addIssue({ code: 'custom', message: `S3 URI must be s3://bucket[/prefix], got '${v}'` });
  else if (/^runs:\/\//i.test(v)) ctx.addIssue({ code: 'custom', message: `'runs://' is not an artifact location (runs:/<run_id>/path is a model URI)` });
});
const urlString = z.string().trim().superRefine((v, ctx) => {
  try { new URL(v); } catch { ctx.addIssue({ code: 'custom', message: `not a valid URL: '${redactString(v)}'` }); }
});

/** The tracker's settings. Keys are the camelCase forms; the environment names are in `TRACKER_ENV`. */
export const trackerConfigSchema = z.object({
  trackingUri: trackingUri.default('sqlite:///mlflow.db'),
  artifactUri: artifactUri.optional(),
  experimentName: z.string().trim().min(1).max(500).default('heimdall-localization'),
  trackingUsername: z.string().optional(),
  trackingPassword: z.string().optional(),
  trackingToken: z.string().optional(),
  trackingInsecureTls: boolish.default(false),
  httpRequestTimeoutS: numberish(1).default(120),
  httpRequestMaxRetries: numberish(0).default(7),
  s3EndpointUrl: urlString.optional(),
  s3IgnoreTls: boolish.default(false),
  awsAccessKeyId: z.string().optional(),
  awsSecretAccessKey: z.string().optional(),
  awsSessionToken: z.string().optional(),
  awsRegion: z.string().default('us-east-1'),
  /** Directory of the on-disk spool (points kept while the backend is down). */
  spoolDir: z.string().default('.mlflow-spool'),
  /** Bound of the spool on disk, in bytes. Points beyond it are dropped (and reported). */
  spoolMaxBytes: numberish(1024).default(1024 * 1024 * 1024),
  /**
   * Write-ahead of metric points, in ms: points the worker holds in memory (not yet stored) are written to the
   * spool's journal at most this long after they are logged, so a SIGKILL or an OOM kill loses at most that much;
   * params, tags, run ends and uploads are written at once. 0: points too at once.
   */
  writeAheadMs: numberish(0).default(1000),
  /** Default deadline of close(), in seconds. */
  closeTimeoutS: numberish(0).default(60),
  /** Install SIGINT/SIGTERM/uncaught-exception handlers that end the run KILLED/FAILED. */
  handleSignals: boolish.default(true),
  /** System metrics for runs started without `logSystemMetrics` (MLflow's default: off; the Trainer turns them on). */
  enableSystemMetricsLogging: boolish.default(false),
  /** Seconds between system metrics samples (lib/tracking/system_metrics.ts). */
  systemMetricsSamplingIntervalS: numberish(0.01).default(10),
  /** Samples averaged into one logged system metrics point. */
  systemMetricsSamplesBeforeLogging: numberish(1).pipe(z.number().int('must be a whole number of samples')).default(1),
  /** Node id inserted in system metric keys (`system/<node id>/cpu_utilization_percentage`), for multi-node runs. */
  systemMetricsNodeId: z.string().trim().min(1).regex(/^[A-Za-z0-9_\-. ]+$/, 'letters, digits, _ - . and space only (it becomes part of metric keys)').optional(),
  /**
   * The NVML library GPU system metrics are read through (default: the NVIDIA driver's libnvidia-ml.so.1, found
   * as the dynamic linker finds it). Set it where the driver's library is elsewhere (some containers, WSL).
   */
  nvmlLibrary: z.string().trim().min(1).default('libnvidia-ml.so.1'),
});
export type TrackerConfig = z.output<typeof trackerConfigSchema>;
export type TrackerConfigInput = z.input<typeof trackerConfigSchema>;

/** Environment variable (and aliases, first wins) for each tracker setting. */
export const TRACKER_ENV: Record<keyof TrackerConfig, string[]> = {
  trackingUri: ['MLFLOW_TRACKING_URI'],
  artifactUri: ['MLFLOW_ARTIFACT_URI'],
  experimentName: ['MLFLOW_EXPERIMENT_NAME'],
  trackingUsername: ['MLFLOW_TRACKING_USERNAME'],
  trackingPassword: ['MLFLOW_TRACKING_PASSWORD'],
  trackingToken: ['MLFLOW_TRACKING_TOKEN'],
  trackingInsecureTls: ['MLFLOW_TRACKING_INSECURE_TLS'],
  httpRequestTimeoutS: ['MLFLOW_HTTP_REQUEST_TIMEOUT'],
  httpRequestMaxRetries: ['MLFLOW_HTTP_REQUEST_MAX_RETRIES'],
  s3EndpointUrl: ['MLFLOW_S3_ENDPOINT_URL'],
  s3IgnoreTls: ['MLFLOW_S3_IGNORE_TLS'],
  awsAccessKeyId: ['AWS_ACCESS_KEY_ID', 'MLFLOW_S3_ACCESS_KEY_ID'],
  awsSecretAccessKey: ['AWS_SECRET_ACCESS_KEY', 'MLFLOW_S3_SECRET_ACCESS_KEY'],
  awsSessionToken: ['AWS_SESSION_TOKEN'],
  awsRegion: ['AWS_DEFAULT_REGION', 'AWS_REGION'],
  spoolDir: ['HEIMDALL_MLFLOW_SPOOL_DIR'],
  spoolMaxBytes: ['HEIMDALL_MLFLOW_SPOOL_MAX_BYTES'],
  writeAheadMs: ['HEIMDALL_MLFLOW_WRITE_AHEAD_MS'],
  closeTimeoutS: ['HEIMDALL_MLFLOW_CLOSE_TIMEOUT'],
  handleSignals: ['HEIMDALL_MLFLOW_HANDLE_SIGNALS'],
  enableSystemMetricsLogging: ['MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING'],
  systemMetricsSamplingIntervalS: ['MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL'],
  systemMetricsSamplesBeforeLogging: ['MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING'],
  systemMetricsNodeId: ['MLFLOW_SYSTEM_METRICS_NODE_ID'],
  nvmlLibrary: ['HEIMDALL_NVML_LIBRARY'],
};

const SECRET_FIELDS: (keyof TrackerConfig)[] = ['trackingPassword', 'trackingToken', 'awsSecretAccessKey', 'awsSessionToken'];

export interface LoadOptions {
  /** Environment to read (default `process.env`). */
  env?: NodeJS.ProcessEnv | Record<string, string | undefined>;
  /** `.env` file to read (default `./.env` when it exists; `false` disables it). */
  dotenvPath?: string | false;
}

/** Reads a `.env` file with dotenv (no mutation of process.env). */
export function readDotenv(path: string | false | undefined): Record<string, string> {
  if (path === false) return {};
  const p = resolve(path ?? '.env');
  if (!existsSync(p)) {
    if (path) throw new ConfigError([`.env file '${p}' does not exist`]);
    return {};
  }
  return parseDotenv(readFileSync(p));
}

/**
 * Builds a config object from (highest first) explicit options, the environment and the `.env` file, and
 * validates it against `schema`. Throws one ConfigError listing every problem. Secret values are
 * registered for redaction.
 */
export function loadConfig<S extends z.ZodObject<z.ZodRawShape>>(
  schema: S,
  envNames: Partial<Record<string, string[]>>,
  options: Record<string, unknown> = {},
  load: LoadOptions = {},
): z.output<S> {
  const env = load.env ?? process.env;
  const dotenv = readDotenv(load.dotenvPath);
  const raw: Record<string, unknown> = {};
  const sourceOf: Record<string, string> = {};
  for (const [field, names] of Object.entries(envNames)) {
    for (const name of names ?? []) {
      const v = env[name] ?? dotenv[name];
      if (v !== undefined && v !== '') {
        raw[field] = v;
        sourceOf[field] = env[name] !== undefined ? name : `${name} (.env)`;
        break;
      }
    }
  }
  for (const [k, v] of Object.entries(options)) {
    if (v !== undefined) {
      raw[k] = v;
      sourceOf[k] = `option ${k}`;
    }
  }
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v === 'string' && isSecretKey(k)) registerSecret(v);
  }
  // Passwords inside URIs are secrets too.
  for (const v of Object.values(raw)) {
    if (typeof v === 'string') for (const m of v.matchAll(/:\/\/[^/@\s:]+:([^/@\s]+)@/g)) registerSecret(decodeURIComponent(m[1]!));
  }
  const parsed = schema.strict().safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => {
      const field = String(i.path[0] ?? '');
      const where = sourceOf[field] ?? (field ? `option ${field}` : 'options');
      const msg = i.code === 'unrecognized_keys' ? `unknown option(s): ${(i as { keys: string[] }).keys.join(', ')}` : i.message;
      return redactString(field ? `${where}: ${msg}` : msg);
    });
    throw new ConfigError(issues);
  }
  return parsed.data as z.output<S>;
}

/** The tracker's configuration from options, environment and `.env`. */
export function loadTrackerConfig(options: TrackerConfigInput = {}, load: LoadOptions = {}): TrackerConfig {
  const cfg = loadConfig(trackerConfigSchema, TRACKER_ENV, options as Record<string, unknown>, load);
  for (const f of SECRET_FIELDS) registerSecret(cfg[f] as string | undefined);
  return cfg;
}

// ---------------------------------------------------------------------------------------------------------
// Training options: the one declaration of the engine's and the Trainer's options — their enums, ranges and
// defaults. The Trainer validates its constructor options with `trainerOptionsSchema`, lib/native.ts completes
// every Engine's options with `engineOptionsSchema` (the binding takes no defaults of its own), and the CLI
// derives its `train` flags, their help text and defaults from these fields (lib/cli/flags.ts).
// ---------------------------------------------------------------------------------------------------------
export const DEVICES = 'auto, cpu, cuda or cuda:N';
export const deviceSchema = z.string().regex(/^(auto|cpu|cuda(:\d+)?)$/, `must be ${DEVICES}`).default('auto').describe(DEVICES);
export const PRECISIONS = ['32', 'bf16-mixed', '16-mixed'] as const;
export const precisionSchema = z.enum(PRECISIONS).default('32').describe('training precision (the mixed ones on CUDA)');
export const OPTIMIZERS = ['adamw', 'sgd'] as const;
/** `exponential`: minLr → lr over totalSteps (the LR range test's sweep, used by `trainer.lrFind`). */
export const SCHEDULES = ['cosine', 'constant', 'exponential'] as const;

/** AdamW (beta1, beta2, eps) or SGD (momentum, dampening, nesterov); weight decay spares norms, biases and γ. */
export const optimizerSchema = z
  .object({
    name: z.enum(OPTIMIZERS).default('adamw'),
    lr: z.number().positive().default(1e-3).describe('learning rate'),
    weightDecay: z.number().min(0).default(1e-5).describe('weight decay (not on norms, biases, layer scale)'),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.999),
    eps: z.number().positive().default(1e-8),
    momentum: z.number().min(0).default(0.9),
    dampening: z.number().min(0).max(1).default(0),
    nesterov: z.boolean().default(false),
  })
  .strict();

export const scheduleSchema = z
  .object({
    name: z.enum(SCHEDULES).default('cosine'),
    warmupSteps: z.number().int().min(0).default(0).describe('linear warmup steps before the cosine decay'),
    minLr: z.number().min(0).default(1e-6),
  })
  .strict();

const positionScaleSchema = z.object({ latCenter: z.number(), lonCenter: z.number(), latScale: z.number(), lonScale: z.number() });

/** Everything the native Engine takes; lib/native.ts sends it complete. */
export const engineOptionsSchema = z
  .object({
    device: deviceSchema,
    precision: precisionSchema,
    optimizer: optimizerSchema.prefault({}),
    schedule: scheduleSchema.extend({ totalSteps: z.number().int().min(0).default(0) }).prefault({}),
    loss: z.enum(['auto', 'gaussian_nll', 'cross_entropy', 'mse']).default('auto'),
    labelSmoothing: z.number().min(0).lt(1).default(0),
    gradClipNorm: z.number().min(0).default(0).describe('clip gradients to this norm (0: off)'),
    accumulate: z.number().int().min(1).default(1),
    channelsLast: z.boolean().default(false),
    /** libtorch's process-wide algorithm flags; 'keep': leave them as they are (another engine may have set them). */
    deterministic: z.enum(['keep', 'on', 'off', 'warn']).default('keep'),
    benchmark: z.enum(['keep', 'on', 'off']).default('keep'),
    /** Data-parallel: the heads' BatchNorm statistics over all ranks' batches (SyncBatchNorm). */
    syncBatchNorm: z.boolean().default(false),
    /** EMA of the weights (EMAWeightAveraging): decay in [0, 1), 0 off; update every N optimizer steps from step emaStart. */
    emaDecay: z.number().min(0).lt(1).default(0),
    emaEvery: z.number().int().min(1).default(1),
    emaStart: z.number().int().min(1).default(1),
    /** StochasticWeightAveraging: an equal-weight average the Trainer updates at epoch ends. */
    swa: z.boolean().default(false),
    seed: z.number().int().min(0).default(42).describe('seed for data, initialisation and shuffling'),
    /** Intra-op threads; 0: the engine's default (the CPUs this process may use). */
    threads: z.number().int().min(0).default(0),
    positionScale: positionScaleSchema.optional(),
  })
  .strict();
export type EngineConfigInput = z.input<typeof engineOptionsSchema>;
export type EngineConfig = z.output<typeof engineOptionsSchema>;

/**
 * A duration as Lightning's `max_time` / `Timer(duration=…)` take it: `'DD:HH:MM:SS'` or `{ days, hours, minutes,
 * seconds }`. Parsed to milliseconds.
 */
export const durationSchema = z
  .union([
    z.string().regex(/^\d+:\d{1,2}:\d{1,2}:\d{1,2}$/, "must be 'DD:HH:MM:SS' (e.g. '00:12:00:00')"),
    z.object({ days: z.number().min(0).optional(), hours: z.number().min(0).optional(), minutes: z.number().min(0).optional(), seconds: z.number().min(0).optional() }).strict(),
  ])
  .transform((d) => {
    const [days, hours, minutes, seconds] = typeof d === 'string' ? d.split(':').map(Number) : [d.days ?? 0, d.hours ?? 0, d.minutes ?? 0, d.seconds ?? 0];
    return (((days! * 24 + hours!) * 60 + minutes!) * 60 + seconds!) * 1000;
  })
  .refine((ms) => ms > 0, 'must be longer than 0 s');

/**
 * Lightning's `limit_*_batches`: an integer ≥ 1 is a number of batches, a number in (0, 1) a fraction of the
 * split's batches (at least one), 0 turns the loop off. JavaScript has no `1.0`: leave it out for all batches.
 */
export const batchLimitSchema = z
  .number()
  .min(0)
  .refine((n) => Number.isInteger(n) || n < 1, 'must be a whole number of batches (≥ 0) or a fraction in (0, 1)');

/** Batches a `batchLimitSchema` value leaves of `total` (undefined: all). */
export function limitBatches(limit: number | undefined, total: number): number {
  if (limit === undefined) return total;
  if (Number.isInteger(limit)) return Math.min(limit, total);
  return Math.min(total, Math.max(1, Math.floor(limit * total)));
}

/**
 * One rank's place in a data-parallel process group (native/dist/group.h); lib/native.ts sends it complete.
 * The launcher (lib/trainer/launcher.ts) fills it from torchrun's / Kubeflow's variables or its own.
 */
export const DIST_BACKENDS = ['gloo', 'nccl'] as const;
export const processGroupSchema = z
  .object({
    backend: z.enum(DIST_BACKENDS).default('gloo').describe('gloo (CPU) or nccl (CUDA)'),
    rank: z.number().int().min(0),
    worldSize: z.number().int().min(1),
    masterAddr: z.string().min(1).default('127.0.0.1'),
    masterPort: z.number().int().min(1).max(65535).default(29500),
    /** torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE): rank 0 does not start one. */
    agentStore: z.boolean().default(false),
    /** Every rank must have joined within this time, else an error names the missing ranks. */
    initTimeoutMs: z.number().int().min(1).default(120_000),
    /** One collective (a rank that stops answering fails the others after this). */
    timeoutMs: z.number().int().min(1).default(300_000),
    restartCount: z.number().int().min(0).default(0),
    localRank: z.number().int().min(0).default(0),
  })
  .strict()
  .refine((o) => o.rank < o.worldSize, { message: 'rank must be below worldSize', path: ['rank'] });
export type ProcessGroupInput = z.input<typeof processGroupSchema>;
export type ProcessGroupConfig = z.output<typeof processGroupSchema>;

const engine = engineOptionsSchema.shape;
export const trainerOptionsSchema = z
  .object({
    maxEpochs: z.number().int().min(1).default(100).describe('maximum epochs'),
    device: engine.device,
    precision: engine.precision,
    optimizer: engine.optimizer,
    schedule: scheduleSchema.prefault({}),
    gradClipNorm: engine.gradClipNorm,
    accumulateGradBatches: engine.accumulate,
    /** Default: on for CUDA devices. */
    channelsLast: z.boolean().optional(),
    /**
     * Lightning's `deterministic`: true makes libtorch use deterministic algorithms only (an operation without one
     * fails, naming itself; 'warn': it warns instead) and cuDNN's deterministic convolutions, with cuDNN autotuning
     * off; on CUDA it also sets CUBLAS_WORKSPACE_CONFIG=:4096:8 unless set. Costs speed on CUDA (measure it with
     * benchmarks/train_throughput.ts); on CPU, training is already deterministic for a given thread count.
     */
    deterministic: z.union([z.boolean(), z.literal('warn')]).optional().describe('deterministic algorithms only (true, false or warn)'),
    /** Lightning's `benchmark`: cuDNN autotuning of convolutions (CUDA). Default: off when deterministic, else as it is. */
    benchmark: z.boolean().optional().describe('cuDNN autotuning of convolutions (CUDA)'),
    seed: engine.seed,
    threads: z.number().int().min(1).optional().describe('CPU threads for libtorch'),
    defaultRootDir: z.string().min(1).default('./outputs').describe('checkpoints and exports'),
    enableProgressBar: z.boolean().optional(),
    handleSignals: z.boolean().default(true),
    /** With a logger: add a FigureLogger (training curves, test figures) unless one is given. */
    logFigures: z.boolean().default(true),
    checkValEveryNEpoch: z.number().int().min(1).default(1),
    /**
     * Lightning's `val_check_interval`: validate inside training epochs too — a fraction in (0, 1) of the epoch's
     * batches (0.25: four validations per epoch) or every N training batches (N ≥ 2); 1 (the default): at the end of
     * the epoch only. ModelCheckpoint, EarlyStopping and the logger act on every validation.
     */
    valCheckInterval: z
      .number()
      .positive()
      .refine((v) => v < 1 || Number.isInteger(v), { message: 'a fraction of an epoch in (0, 1), or a whole number of training batches' })
      .default(1)
      .describe('validate every N training batches, or at this fraction of an epoch in (0, 1)'),
    /** System metrics (CPU, memory, disk, network, GPU) logged to the MLflow run while fit runs, as MLflow's. */
    logSystemMetrics: z.boolean().default(true).describe('log system metrics (CPU, memory, disk, network, GPU) to the MLflow run'),
    /** Stop after this much training time (Lightning's `max_time`): at a batch boundary, with a resumable checkpoint. */
    maxTime: durationSchema.optional().describe("stop after this training time, 'DD:HH:MM:SS'"),
    /** Keep training this many epochs even when EarlyStopping asks to stop (Lightning's `min_epochs`). */
    minEpochs: z.number().int().min(0).default(0).describe('epochs to train before early stopping may end fit'),
    /** Keep training until this many optimizer steps even when EarlyStopping asks to stop (`min_steps`). */
    minSteps: z.number().int().min(0).default(0),
    /** Log training-batch metrics every N optimizer steps (Lightning's `log_every_n_steps`, default 50). */
    logEveryNSteps: z.number().int().min(1).default(50).describe('log batch metrics every N steps'),
    /** Print a layer table (parameters, output shapes) when fit starts (Lightning's `enable_model_summary`). */
    enableModelSummary: z.boolean().default(true),
    /** End fit after this many optimizer steps (with maxEpochs, whichever comes first); the schedule spans it. */
    maxSteps: z.number().int().min(1).optional().describe('end training after this many optimizer steps'),
    /**
     * Lightning's `fast_dev_run`: `true` (1) or n batches of train, validation (and test()), one epoch, no sanity
     * check; no checkpoints, no early stopping and no logger run; a one-line report. For checking that everything runs.
     */
    fastDevRun: z.union([z.boolean(), z.number().int().min(1)]).default(false),
    /**
     * Lightning's `overfit_batches`: train on the same first n batches (a count, or a fraction in (0, 1)) every
     * epoch, in the data's order (no shuffling), and validate on the first n validation batches — a quick check that
     * the model can fit anything at all. Overrides limitTrainBatches / limitValBatches.
     */
    overfitBatches: batchLimitSchema.default(0).describe('train on the same first n batches every epoch (no shuffling)'),
    limitTrainBatches: batchLimitSchema.optional(),
    limitValBatches: batchLimitSchema.optional(),
    limitTestBatches: batchLimitSchema.optional(),
    /** Validation batches run before training starts, to catch a broken validation early (-1: all, 0: off). */
    numSanityValSteps: z.number().int().min(-1).default(2).describe('validation batches checked before training'),
    // Data-parallel training (lib/trainer/distributed.ts): `devices` processes per node × `numNodes`.
    devices: z
      .preprocess((v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v), z.union([z.number().int().min(1), z.literal('auto')]))
      .default(1)
      .describe('data-parallel processes per node: a number, or auto (one per CUDA device, else 1)'),
    numNodes: z.number().int().min(1).default(1).describe('nodes (each runs the same command with NODE_RANK, or under torchrun)'),
    strategy: z.enum(['auto', 'ddp']).default('auto').describe('auto: ddp when more than one process, else one process'),
    /**
     * Lightning's `sync_batchnorm`: the localization head's BatchNorm layers normalise each training batch with the
     * statistics of all ranks' batches, so N ranks with batch b train as one process with batch N·b. Off by default
     * (as Lightning): each rank's own batch statistics. ConvNeXt itself has LayerNorm only.
     */
    syncBatchNorm: z.boolean().default(false).describe('synchronise the BatchNorm statistics of the localization head across ranks'),
  })
  .strict();
export type TrainerConfigInput = z.input<typeof trainerOptionsSchema>;
export type TrainerConfig = z.output<typeof trainerOptionsSchema>;

export const earlyStoppingOptionsSchema = z
  .object({
    monitor: z.string().min(1).default('val/loss'),
    /** Validations without improvement before stopping (reference: 5). */
    patience: z.number().int().min(0).default(5).describe('early-stopping patience on val/loss'),
    /** The least change that counts as an improvement. */
    minDelta: z.number().default(0).transform(Math.abs),
    mode: z.enum(['min', 'max']).default('min'),
    /** Stop at once when the metric becomes NaN or infinite. */
    checkFinite: z.boolean().default(true),
  })
  .strict();

export const modelCheckpointOptionsSchema = z
  .object({
    /** Folder (default `<defaultRootDir>/checkpoints`). */
    dirpath: z.string().min(1).optional(),
    /** Template: `{epoch}` and `{<metric>}` with an optional format `{val/loss:.4f}`; keys become path-safe (`val_loss`). */
    filename: z.string().min(1).optional(),
    monitor: z.string().min(1).default('val/loss'),
    mode: z.enum(['min', 'max']).default('min'),
    /** How many best checkpoints to keep (0 keeps none, -1 keeps all). */
    saveTopK: z.number().int().min(-1).default(3),
    /** Also write `last.safetensors` every epoch. */
    saveLast: z.boolean().default(true),
  })
  .strict();

/** Parses options with `schema`; throws one ConfigError naming every invalid field. */
export function parseOptions<S extends z.ZodType>(schema: S, input: unknown, source: string): z.output<S> {
  const r = schema.safeParse(input ?? {});
  if (r.success) return r.data;
  throw new ConfigError(
    r.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`),
    source,
  );
}

/** The Trainer's options, validated; throws one ConfigError naming every invalid field. */
export function parseTrainerOptions(input: unknown, source = 'Trainer options'): TrainerConfig {
  return parseOptions(trainerOptionsSchema, input, source);
}
