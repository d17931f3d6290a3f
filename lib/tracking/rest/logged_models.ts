// MLflow 3 logged models over the REST API (service.proto of the pinned mlflow):
//   POST  logged-models                 CreateLoggedModel {experiment_id, name, model_type, source_run_id, params, tags}
//   PATCH logged-models/<id>            FinalizeLoggedModel {model_id, status: LOGGED_MODEL_READY | LOGGED_MODEL_UPLOAD_FAILED}
//   PATCH logged-models/<id>/tags       SetLoggedModelTags {tags}
//   GET   logged-models/<id>            GetLoggedModel
//   POST  logged-models/search          SearchLoggedModels {experiment_ids, filter, max_results, page_token}
//   POST  runs/outputs                  LogOutputs {run_id, models: [{model_id, step}]}
//   POST  runs/log-batch                metrics with model_id (the server writes logged_model_metrics)
// A server older than MLflow 3 answers 404 to these endpoints: create() then says so (null).
import { MlflowError } from '../errors.js';
import type { CreateLoggedModelOptions, LoggedModel, LoggedModelStatus, ModelMetric, ModelOutput, Tag } from '../types.js';

type J = Record<string, unknown>;
type Call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', endpoint: string, body?: J, retries?: number) => Promise<J>;

const STATUS_PROTO: Record<'READY' | 'FAILED', string> = { READY: 'LOGGED_MODEL_READY', FAILED: 'LOGGED_MODEL_UPLOAD_FAILED' };
const STATUS_OF_PROTO: Record<string, LoggedModelStatus> = {
  LOGGED_MODEL_STATUS_UNSPECIFIED: 'UNSPECIFIED', LOGGED_MODEL_PENDING: 'PENDING', LOGGED_MODEL_READY: 'READY', LOGGED_MODEL_UPLOAD_FAILED: 'FAILED',
};

const kv = (list: unknown): Record<string, string> =>
  Object.fromEntries(((list as { key: string; value: string }[] | undefined) ?? []).map((t) => [t.key, t.value ?? '']));

/** A filter string value: MLflow's search grammar quotes with '…'. */
function quote(v: string): string {
  if (v.includes("'")) throw new MlflowError(`'${v}' cannot be searched for (it contains a quote)`, 'INVALID_PARAMETER_VALUE');
  return `'${v}'`;
}

function decodeDouble(v: unknown): number {
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  return Number(v);
}

/** True when the server has no such endpoint (an MLflow 2.x server): 404 without an MLflow error code of the resource. */
function endpointMissing(e: unknown): boolean {
  const err = e as MlflowError;
  return err instanceof MlflowError && err.httpStatus === 404 && err.code !== 'RESOURCE_DOES_NOT_EXIST';
}

export class RestLoggedModels {
  constructor(private readonly call: Call) {}

  async create(o: CreateLoggedModelOptions): Promise<LoggedModel | null> {
    try {
      const r = await this.call('POST', 'logged-models', {
        experiment_id: o.experimentId, name: o.name, model_type: o.modelType, source_run_id: o.sourceRunId,
        params: o.params.map((p) => ({ key: p.key, value: p.value })), tags: o.tags.map((t) => ({ key: t.key, value: t.value })),
      });
      return toLoggedModel(r.model as J);
    } catch (e) {
      if (endpointMissing(e)) return null;
      throw e;
    }
  }

  async finalize(modelId: string, status: 'READY' | 'FAILED'): Promise<LoggedModel> {
    const r = await this.call('PATCH', `logged-models/${encodeURIComponent(modelId)}`, { model_id: modelId, status: STATUS_PROTO[status] });
    return toLoggedModel(r.model as J);
  }

  async setTags(modelId: string, tags: Tag[]): Promise<void> {
    await this.call('PATCH', `logged-models/${encodeURIComponent(modelId)}/tags`, { tags: tags.map((t) => ({ key: t.key, value: t.value })) });
  }

  async get(modelId: string): Promise<LoggedModel> {
    const r = await this.call('GET', `logged-models/${encodeURIComponent(modelId)}`);
    return toLoggedModel(r.model as J);
  }

  async search(experimentIds: string[], filter: { name?: string; sourceRunId?: string } = {}): Promise<LoggedModel[]> {
    const clauses: string[] = [];
    if (filter.name !== undefined) clauses.push(`name = ${quote(filter.name)}`);
    if (filter.sourceRunId !== undefined) clauses.push(`source_run_id = ${quote(filter.sourceRunId)}`);
    const out: LoggedModel[] = [];
    let pageToken: string | undefined;
    try {
      do {
        const r = await this.call('POST', 'logged-models/search', {
          experiment_ids: experimentIds, ...(clauses.length ? { filter: clauses.join(' AND ') } : {}), max_results: 100, page_token: pageToken,
        });
        for (const m of (r.models as J[] | undefined) ?? []) out.push(toLoggedModel(m));
        pageToken = (r.next_page_token as string | undefined) || undefined;
      } while (pageToken && out.length < 1000);
    } catch (e) {
      if (endpointMissing(e)) return [];
      throw e;
    }
    return out;
  }

  async logOutputs(runId: string, models: ModelOutput[]): Promise<void> {
    await this.call('POST', 'runs/outputs', { run_id: runId, models: models.map((m) => ({ model_id: m.modelId, step: m.step })) });
  }

  async logMetrics(runId: string, modelId: string, metrics: ModelMetric[], encode: (v: number) => number | string): Promise<void> {
    for (let i = 0; i < metrics.length; i += 1000) {
      await this.call('POST', 'runs/log-batch', {
        run_id: runId,
        metrics: metrics.slice(i, i + 1000).map((m) => ({
          key: m.key, value: encode(m.value), timestamp: m.timestamp, step: m.step, model_id: modelId, dataset_name: m.datasetName, dataset_digest: m.datasetDigest,
        })),
      });
    }
  }
}

function toLoggedModel(m: J): LoggedModel {
  const info = (m.info ?? {}) as J;
  const data = (m.data ?? {}) as J;
  return {
    modelId: String(info.model_id),
    experimentId: String(info.experiment_id),
    name: String(info.name ?? ''),
    artifactLocation: String(info.artifact_uri ?? ''),
    creationTimestampMs: Number(info.creation_timestamp_ms ?? 0),
    lastUpdatedTimestampMs: Number(info.last_updated_timestamp_ms ?? 0),
    status: STATUS_OF_PROTO[String(info.status)] ?? 'UNSPECIFIED',
    modelType: (info.model_type as string | undefined) ?? null,
    sourceRunId: (info.source_run_id as string | undefined) ?? null,
    statusMessage: (info.status_message as string | undefined) ?? null,
    tags: kv(info.tags),
    params: kv(data.params),
    metrics: ((data.metrics as J[] | undefined) ?? []).map((x) => ({
      key: String(x.key), value: decodeDouble(x.value), timestamp: Number(x.timestamp ?? 0), step: Number(x.step ?? 0),
    })),
  };
}
