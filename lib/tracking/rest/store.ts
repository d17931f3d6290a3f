// MLflow's REST API 2.0 (a `mlflow server`, Databricks-compatible auth by username/password or token).
import { isRetryable, MlflowError, notFound } from '../errors.js';
import { parseFilter, parseOrderBy } from '../filter.js';
import type {
  CreateLoggedModelOptions, CreateRunOptions, Experiment, LogBatch, LoggedModel, Metric, ModelMetric, ModelOutput, ModelStage, ModelVersion, RegisteredModel, Run, RunDataset, RunInfo, RunStatus,
  SearchRunsOptions, Tag, TrackingStore,
} from '../types.js';
import { REST_BATCH_LIMITS, validateAlias, validateModelName } from '../validation.js';
import { logInputsBody } from './datasets.js';
import { DATASET_CONTEXT_TAG, type DatasetInput } from '../datasets.js';
import { backoffMs, errorFromResponse, httpRequest, sleep, type HttpResponse } from './http.js';
import { RestLoggedModels } from './logged_models.js';

export interface RestStoreOptions {
  trackingUri: string;
  username?: string;
  password?: string;
  token?: string;
  insecureTls?: boolean;
  timeoutS?: number;
  maxRetries?: number;
}

type J = Record<string, unknown>;

/** Doubles in MLflow's protobuf JSON: NaN and ±Infinity travel as strings. */
function encodeDouble(v: number): number | string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '-Infinity';
  return v;
}
function decodeDouble(v: unknown): number {
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  return Number(v);
}
const numOrNull = (v: unknown) => (v === undefined || v === null ? null : Number(v));

/** An answer of the server that is not what MLflow's API returns (a hostile or broken server, a proxy's page). */
function malformed(what: string): MlflowError {
  return new MlflowError(`unexpected answer from the MLflow server: ${what}`, 'INTERNAL_ERROR');
}
const isObject = (v: unknown): v is J => typeof v === 'object' && v !== null && !Array.isArray(v);
/** A field that must be an object. */
function obj(v: unknown, what: string): J {
  if (!isObject(v)) throw malformed(`${what} is ${v === undefined ? 'missing' : `not an object (${JSON.stringify(v)?.slice(0, 80)})`}`);
  return v;
}
/** A repeated field: absent is empty; otherwise an array of objects. */
function list(v: unknown, what: string): J[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw malformed(`${what} is not a list`);
  return v.map((x, i) => obj(x, `${what}[${i}]`));
}
/** A repeated string field: absent is empty. */
function strings(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw malformed(`${what} is not a list`);
  return v.map(String);
}
/** A page token: absent, or a string. */
function pageToken(v: unknown, seen: Set<string>, what: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw malformed(`${what}: next_page_token is not a string`);
  if (seen.has(v)) throw malformed(`${what}: the server sent the same next_page_token twice (it would never end)`);
  seen.add(v);
  return v;
}
const kv = (l: unknown, what = 'tags'): Record<string, string> =>
  Object.fromEntries(list(l, what).map((t) => [String(t.key), t.value === undefined || t.value === null ? '' : String(t.value)]));

export class RestStore implements TrackingStore {
  readonly kind = 'rest' as const;
  readonly limits = REST_BATCH_LIMITS;
  readonly baseUrl: string;
  private readonly o: RestStoreOptions;
  private readonly loggedModels = new RestLoggedModels((m, e, b, r) => this.call(m, e, b, r));

  constructor(o: RestStoreOptions) {
    this.o = o;
    this.baseUrl = o.trackingUri.replace(/\/+$/, '');
  }

  defaultArtifactLocation(): string | null {
    return null; // the server decides
  }

  private headers(json: boolean): Record<string, string> {
    const h: Record<string, string> = { 'User-Agent': 'heimdall-torch' };
    if (json) h['Content-Type'] = 'application/json';
    if (this.o.token) h.Authorization = `Bearer ${this.o.token}`;
    else if (this.o.username !== undefined && this.o.password !== undefined) {
      h.Authorization = `Basic ${Buffer.from(`${this.o.username}:${this.o.password}`).toString('base64')}`;
    }
    return h;
  }

  /** One REST call with MLflow's retry policy; `retries` overrides MLFLOW_HTTP_REQUEST_MAX_RETRIES. */
  async call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', endpoint: string, body: J = {}, retries = this.o.maxRetries ?? 7): Promise<J> {
    let url = `${this.baseUrl}/api/2.0/mlflow/${endpoint}`;
    let payload: string | undefined;
    if (method === 'GET') {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(body)) {
        if (Array.isArray(v)) for (const x of v) qs.append(k, String(x));
        else if (v !== undefined && v !== null) qs.append(k, String(v));
      }
      const s = qs.toString();
      if (s) url += `?${s}`;
    } else {
      payload = JSON.stringify(body);
    }
    for (let attempt = 0; ; attempt++) {
      let res: HttpResponse;
      try {
        res = await httpRequest({
          method, url, body: payload,
          headers: payload !== undefined ? { ...this.headers(true), 'Content-Length': String(Buffer.byteLength(payload)) } : this.headers(false),
          timeoutMs: (this.o.timeoutS ?? 120) * 1000, insecureTls: this.o.insecureTls,
        });
      } catch (e) {
        const err = new MlflowError(`${method} ${endpoint}: cannot reach the MLflow server at ${this.baseUrl}: ${(e as Error).message}`, 'TEMPORARILY_UNAVAILABLE', { retryable: true, cause: e });
        if (attempt >= retries) throw err;
        await sleep(backoffMs(attempt));
        continue;
      }
      if (res.status >= 200 && res.status < 300) {
        const text = res.body.toString('utf8');
        if (!text) return {};
        let answer: unknown;
        try {
          answer = JSON.parse(text);
        } catch {
          throw malformed(`the answer to ${method} ${endpoint} (HTTP ${res.status}) is not JSON: ${JSON.stringify(text.slice(0, 120))}`);
        }
        return obj(answer, `the answer to ${method} ${endpoint}`);
      }
      const err = errorFromResponse(res, `${method} ${endpoint}`);
      if (!err.retryable || attempt >= retries) throw err;
      await sleep(backoffMs(attempt));
    }
  }

  async open(): Promise<void> {
    // Checks that the server answers (and that credentials are accepted).
    try {
      await this.call('POST', 'experiments/search', { max_results: 1 });
    } catch (e) {
      if (isRetryable(e)) throw e;
      throw e;
    }
  }

  async close(): Promise<void> {}

  private toExperiment(e: J): Experiment {
    return {
      experimentId: String(e.experiment_id),
      name: String(e.name),
      artifactLocation: String(e.artifact_location ?? ''),
      lifecycleStage: (e.lifecycle_stage ?? 'active') as Experiment['lifecycleStage'],
      creationTime: numOrNull(e.creation_time),
      lastUpdateTime: numOrNull(e.last_update_time),
      tags: kv(e.tags),
    };
  }

  async getExperimentByName(name: string): Promise<Experiment | null> {
    try {
      const r = await this.call('GET', 'experiments/get-by-name', { experiment_name: name });
      return this.toExperiment(obj(r.experiment, 'experiment'));
    } catch (e) {
      if (e instanceof MlflowError && e.code === 'RESOURCE_DOES_NOT_EXIST') return null;
      throw e;
    }
  }

  async getExperiment(experimentId: string): Promise<Experiment> {
    const r = await this.call('GET', 'experiments/get', { experiment_id: experimentId });
    return this.toExperiment(obj(r.experiment, 'experiment'));
  }

  async createExperiment(name: string, artifactLocation: string | undefined, tags: Tag[]): Promise<string> {
    const r = await this.call('POST', 'experiments/create', { name, artifact_location: artifactLocation, tags });
    return String(r.experiment_id);
  }

  async searchExperiments(filter?: string, maxResults = 1000): Promise<Experiment[]> {
    const r = await this.call('POST', 'experiments/search', { filter, max_results: maxResults });
    return list(r.experiments, 'experiments').map((e) => this.toExperiment(e));
  }

  private toRunInfo(i: J): RunInfo {
    return {
      runId: String(i.run_id ?? i.run_uuid),
      runName: String(i.run_name ?? ''),
      experimentId: String(i.experiment_id),
      userId: String(i.user_id ?? ''),
      status: i.status as RunStatus,
      startTime: numOrNull(i.start_time),
      endTime: numOrNull(i.end_time),
      artifactUri: String(i.artifact_uri ?? ''),
      lifecycleStage: (i.lifecycle_stage ?? 'active') as RunInfo['lifecycleStage'],
    };
  }

  private toRun(r: J): Run {
    const data = r.data === undefined ? {} : obj(r.data, 'run.data');
    const metrics: Record<string, number> = {};
    for (const m of list(data.metrics, 'run.data.metrics')) metrics[String(m.key)] = decodeDouble(m.value);
    return { info: this.toRunInfo(obj(r.info, 'run.info')), metrics, params: kv(data.params, 'run.data.params'), tags: kv(data.tags, 'run.data.tags') };
  }

  async createRun(o: CreateRunOptions): Promise<RunInfo> {
    const r = await this.call('POST', 'runs/create', {
      experiment_id: o.experimentId, user_id: o.userId, start_time: o.startTime, tags: o.tags, run_name: o.runName,
    });
    return this.toRunInfo(obj(obj(r.run, 'run').info, 'run.info'));
  }

  async updateRun(runId: string, status: RunStatus, endTime: number | null): Promise<void> {
    await this.call('POST', 'runs/update', { run_id: runId, status, end_time: endTime ?? undefined }, 0);
  }

  async getRun(runId: string): Promise<Run> {
    const r = await this.call('GET', 'runs/get', { run_id: runId });
    return this.toRun(obj(r.run, 'run'));
  }

  /** One attempt: the worker owns the retry/spool policy for logging. */
  async logBatch(b: LogBatch): Promise<void> {
    await this.call('POST', 'runs/log-batch', {
      run_id: b.runId,
      metrics: b.metrics.map((m) => ({ key: m.key, value: encodeDouble(m.value), timestamp: m.timestamp, step: m.step })),
      params: b.params,
      tags: b.tags,
    }, 0);
  }

  /** Dataset inputs of a run (rest/datasets.ts). */
  async logInputs(runId: string, datasets: DatasetInput[]): Promise<string[]> {
    await this.call('POST', 'runs/log-inputs', logInputsBody(runId, datasets));
    return [];
  }

  /** runs/get's `inputs.dataset_inputs` (a server without datasets has none: []). */
  async getRunDatasets(runId: string): Promise<RunDataset[]> {
    const r = await this.call('GET', 'runs/get', { run_id: runId });
    const inputs = (obj(r.run, 'run').inputs ?? {}) as Record<string, unknown>;
    return (Array.isArray(inputs.dataset_inputs) ? inputs.dataset_inputs : []).map((di: Record<string, unknown>) => {
      const d = (di.dataset ?? {}) as Record<string, unknown>;
      const tags = Array.isArray(di.tags) ? (di.tags as Array<{ key?: string; value?: string }>) : [];
      return { name: String(d.name ?? ''), digest: String(d.digest ?? ''), context: tags.find((t) => t.key === DATASET_CONTEXT_TAG)?.value ?? null };
    });
  }

  async getMetricHistory(runId: string, key: string): Promise<Metric[]> {
    const out: Metric[] = [];
    let token: string | undefined;
    const seen = new Set<string>();
    do {
      const r = await this.call('GET', 'metrics/get-history', { run_id: runId, metric_key: key, max_results: 25000, page_token: token });
      const page = list(r.metrics, 'metrics');
      for (const m of page) out.push({ key: String(m.key), value: decodeDouble(m.value), timestamp: Number(m.timestamp), step: Number(m.step ?? 0) });
      token = pageToken(r.next_page_token, seen, 'metrics/get-history');
      if (token && !page.length) throw malformed('metrics/get-history: an empty page with a next_page_token');
    } while (token);
    return out.sort((a, b) => a.step - b.step || a.timestamp - b.timestamp);
  }

  async searchRuns(o: SearchRunsOptions): Promise<Run[]> {
    parseFilter(o.filter); // clear client-side errors for a bad filter
    parseOrderBy(o.orderBy);
    let ids = o.experimentIds;
    if (!ids?.length) ids = (await this.searchExperiments(undefined, 1000)).map((e) => e.experimentId);
    const want = Math.max(1, o.maxResults ?? 1000);
    const out: Run[] = [];
    let token: string | undefined;
    const seen = new Set<string>();
    do {
      const r = await this.call('POST', 'runs/search', {
        experiment_ids: ids, filter: o.filter ?? '', order_by: o.orderBy ?? [], max_results: Math.min(want - out.length, 50000),
        run_view_type: o.runViewType ?? 'ACTIVE_ONLY', page_token: token,
      });
      const page = list(r.runs, 'runs');
      for (const run of page) out.push(this.toRun(run));
      token = pageToken(r.next_page_token, seen, 'runs/search');
      if (token && !page.length) throw malformed('runs/search: an empty page with a next_page_token');
    } while (token && out.length < want);
    return out;
  }

  private toVersion(v: J): ModelVersion {
    return {
      name: String(v.name),
      version: String(v.version),
      creationTimestamp: numOrNull(v.creation_timestamp),
      lastUpdatedTimestamp: numOrNull(v.last_updated_timestamp),
      currentStage: String(v.current_stage ?? 'None'),
      description: (v.description as string | undefined) ?? null,
      source: String(v.source ?? ''),
      runId: (v.run_id as string | undefined) || null,
      status: String(v.status ?? 'READY'),
      statusMessage: (v.status_message as string | undefined) ?? null,
      tags: kv(v.tags, 'model_version.tags'),
      aliases: strings(v.aliases, 'model_version.aliases').sort(),
    };
  }

  async getRegisteredModel(name: string): Promise<RegisteredModel | null> {
    try {
      const r = obj((await this.call('GET', 'registered-models/get', { name })).registered_model, 'registered_model');
      return {
        name: String(r.name),
        creationTimestamp: numOrNull(r.creation_timestamp),
        lastUpdatedTimestamp: numOrNull(r.last_updated_timestamp),
        description: (r.description as string | undefined) ?? null,
        tags: kv(r.tags),
        aliases: Object.fromEntries(list(r.aliases, 'registered_model.aliases').map((a) => [String(a.alias), String(a.version)])),
        latestVersions: list(r.latest_versions, 'registered_model.latest_versions').map((v) => this.toVersion(v)),
      };
    } catch (e) {
      if (e instanceof MlflowError && e.code === 'RESOURCE_DOES_NOT_EXIST') return null;
      throw e;
    }
  }

  async createRegisteredModel(name: string, description: string | undefined, tags: Tag[]): Promise<void> {
    validateModelName(name);
    await this.call('POST', 'registered-models/create', { name, description, tags });
  }

  async updateRegisteredModelDescription(name: string, description: string): Promise<void> {
    await this.call('PATCH', 'registered-models/update', { name, description });
  }

  // logged models (MLflow 3): rest/logged_models.ts
  createLoggedModel(o: CreateLoggedModelOptions): Promise<LoggedModel | null> {
    return this.loggedModels.create(o);
  }
  finalizeLoggedModel(modelId: string, status: 'READY' | 'FAILED'): Promise<LoggedModel> {
    return this.loggedModels.finalize(modelId, status);
  }
  setLoggedModelTags(modelId: string, tags: Tag[]): Promise<void> {
    return this.loggedModels.setTags(modelId, tags);
  }
  getLoggedModel(modelId: string): Promise<LoggedModel> {
    return this.loggedModels.get(modelId);
  }
  searchLoggedModels(experimentIds: string[], filter?: { name?: string; sourceRunId?: string }): Promise<LoggedModel[]> {
    return this.loggedModels.search(experimentIds, filter);
  }
  logOutputs(runId: string, models: ModelOutput[]): Promise<void> {
    return this.loggedModels.logOutputs(runId, models);
  }
  logLoggedModelMetrics(runId: string, modelId: string, metrics: ModelMetric[]): Promise<void> {
    return this.loggedModels.logMetrics(runId, modelId, metrics, encodeDouble);
  }

  async createModelVersion(name: string, source: string, runId: string | null, description: string | undefined, tags: Tag[], modelId?: string | null): Promise<ModelVersion> {
    const r = await this.call('POST', 'model-versions/create', { name, source, run_id: runId ?? undefined, description, tags, model_id: modelId ?? undefined });
    return this.toVersion(obj(r.model_version, 'model_version'));
  }

  async getModelVersion(name: string, version: string): Promise<ModelVersion> {
    const r = await this.call('GET', 'model-versions/get', { name, version });
    return this.toVersion(obj(r.model_version, 'model_version'));
  }

  async transitionModelVersionStage(name: string, version: string, stage: ModelStage, archiveExisting: boolean): Promise<ModelVersion> {
    const r = await this.call('POST', 'model-versions/transition-stage', { name, version, stage, archive_existing_versions: archiveExisting });
    return this.toVersion(obj(r.model_version, 'model_version'));
  }

  async getLatestVersions(name: string, stages?: string[]): Promise<ModelVersion[]> {
    const r = await this.call('POST', 'registered-models/get-latest-versions', { name, stages: stages ?? [] });
    return list(r.model_versions, 'model_versions').map((v) => this.toVersion(v)).sort((a, b) => Number(a.version) - Number(b.version));
  }

  async setRegisteredModelAlias(name: string, alias: string, version: string): Promise<void> {
    validateAlias(alias, true);
    await this.call('POST', 'registered-models/alias', { name, alias, version });
  }

  async deleteRegisteredModelAlias(name: string, alias: string): Promise<void> {
    validateAlias(alias, false);
    await this.call('DELETE', 'registered-models/alias', { name, alias });
  }

  async getModelVersionByAlias(name: string, alias: string): Promise<ModelVersion> {
    validateAlias(alias, false);
    const r = await this.call('GET', 'registered-models/alias', { name, alias });
    if (!r.model_version) throw notFound(`Registered model alias ${alias} not found.`);
    return this.toVersion(obj(r.model_version, 'model_version'));
  }
}
