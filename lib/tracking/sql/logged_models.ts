// MLflow 3 logged models in the SQL schema, row for row as the pinned mlflow's sqlalchemy_store.py writes them
// (create_logged_model, finalize_logged_model, set_logged_model_tags, log_outputs, _log_model_metrics):
//   logged_models        model_id 'm-<32 hex>', status 1 PENDING → 2 READY | 3 FAILED, lifecycle_stage 'active',
//                        artifact_location '<experiment artifact location>/models/<model_id>/artifacts'
//   logged_model_params  / logged_model_tags   (model_id, experiment_id, key, value)
//   logged_model_metrics (model_id, metric_name, timestamp, step, value, experiment_id, run_id, dataset_*)
//   inputs               RUN_OUTPUT <run_id> → MODEL_OUTPUT <model_id> at a step (the run's output)
// A database made by MLflow 2.x has none of these tables: `supported` is false and the store says so (null).
import { randomUUID } from 'node:crypto';
import { invalidParameter, notFound } from '../errors.js';
import type { CreateLoggedModelOptions, Experiment, LoggedModel, LoggedModelStatus, ModelMetric, ModelOutput, Tag } from '../types.js';
import { sanitizeMetricValue } from '../validation.js';
import type { Row, SqlDriver, SqlExecutor, SqlValue } from './driver.js';

/** LoggedModelStatus.to_int() of the pinned mlflow. */
const STATUS_INT: Record<LoggedModelStatus, number> = { UNSPECIFIED: 0, PENDING: 1, READY: 2, FAILED: 3 };
const STATUS_OF_INT = ['UNSPECIFIED', 'PENDING', 'READY', 'FAILED'] as const;

/** The tables a database needs for logged models (MLflow ≥ 3.0). */
export const LOGGED_MODEL_TABLES = ['logged_models', 'logged_model_params', 'logged_model_tags', 'logged_model_metrics'] as const;

/** Appends path segments to a URI or path like MLflow's append_to_uri_path. */
function appendToUri(base: string, ...parts: string[]): string {
  return [base.replace(/\/+$/, ''), ...parts.map((p) => p.replace(/^\/+|\/+$/g, ''))].join('/');
}

export class SqlLoggedModels {
  /** Set by the store when it opens: false for a database without the logged_models tables (MLflow 2.x). */
  supported = false;

  constructor(private readonly db: SqlDriver) {}

  detect(tables: string[]): void {
    this.supported = LOGGED_MODEL_TABLES.every((t) => tables.includes(t));
  }

  async create(o: CreateLoggedModelOptions, experiment: Experiment): Promise<LoggedModel | null> {
    if (!this.supported) return null;
    const bad = ['/', ':', '.', '%', '"', "'"];  // _validate_logged_model_name
    if (!o.name || bad.some((c) => o.name.includes(c))) {
      throw invalidParameter(`Invalid model name ('${o.name}') provided. Model name must be a non-empty string and cannot contain the following characters: ${bad.join(' ')}`);
    }
    if (experiment.lifecycleStage !== 'active') {
      throw invalidParameter(`The experiment ${experiment.experimentId} must be in the 'active' state. Current state is ${experiment.lifecycleStage}.`);
    }
    const modelId = `m-${randomUUID().replace(/-/g, '')}`;
    const artifactLocation = appendToUri(experiment.artifactLocation, 'models', modelId, 'artifacts');
    const now = Date.now();
    const eid = Number(experiment.experimentId);
    await this.db.transaction(async (tx) => {
      await tx.run(
        `INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, creation_timestamp_ms, last_updated_timestamp_ms, status, lifecycle_stage, model_type, source_run_id, status_message)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, NULL)`,
        [modelId, eid, o.name, artifactLocation, now, now, STATUS_INT.PENDING, o.modelType ?? null, o.sourceRunId ?? null],
      );
      for (const p of dedupe(o.params)) {
        await tx.run('INSERT INTO logged_model_params (model_id, experiment_id, param_key, param_value) VALUES (?, ?, ?, ?)', [modelId, eid, p.key, p.value]);
      }
      await this.upsertTags(tx, modelId, eid, o.tags);
    });
    return this.get(modelId);
  }

  private async upsertTags(tx: SqlExecutor, modelId: string, experimentId: number, tags: Tag[]): Promise<void> {
    for (const t of dedupe(tags)) {
      await tx.run(
        `INSERT INTO logged_model_tags (model_id, experiment_id, tag_key, tag_value) VALUES (?, ?, ?, ?)
         ON CONFLICT (model_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value`,
        [modelId, experimentId, t.key, t.value],
      );
    }
  }

  private async record(ex: SqlExecutor, modelId: string): Promise<Row> {
    const rows = await ex.query('SELECT * FROM logged_models WHERE model_id = ?', [modelId]);
    if (!rows.length) throw notFound(`Logged model with ID '${modelId}' not found.`);
    return rows[0]!;
  }

  async finalize(modelId: string, status: 'READY' | 'FAILED'): Promise<LoggedModel> {
    this.require();
    await this.record(this.db, modelId);
    await this.db.run('UPDATE logged_models SET status = ?, last_updated_timestamp_ms = ? WHERE model_id = ?', [STATUS_INT[status], Date.now(), modelId]);
    return this.get(modelId);
  }

  async setTags(modelId: string, tags: Tag[]): Promise<void> {
    this.require();
    const r = await this.record(this.db, modelId);
    await this.db.transaction((tx) => this.upsertTags(tx, modelId, Number(r.experiment_id), tags));
  }

  /** set_model_versions_tags: `mlflow.modelVersions` += {name, version} (JSON, once per version). */
  async addModelVersion(modelId: string, name: string, version: number): Promise<void> {
    const model = await this.get(modelId);
    let versions: { name: string; version: number | string }[] = [];
    try { versions = JSON.parse(model.tags['mlflow.modelVersions'] ?? '[]') as typeof versions; } catch { versions = []; }
    if (!versions.some((v) => v.name === name && String(v.version) === String(version))) versions.push({ name, version });
    // json.dumps' layout (", " and ": "), so the value reads as Python writes it
    const value = `[${versions.map((v) => `{"name": ${JSON.stringify(v.name)}, "version": ${JSON.stringify(v.version)}}`).join(', ')}]`;
    await this.setTags(modelId, [{ key: 'mlflow.modelVersions', value }]);
  }

  async get(modelId: string): Promise<LoggedModel> {
    this.require();
    const rows = await this.db.query("SELECT * FROM logged_models WHERE model_id = ? AND lifecycle_stage <> 'deleted'", [modelId]);
    if (!rows.length) throw notFound(`Logged model with ID '${modelId}' not found.`);
    return (await this.entities(rows))[0]!;
  }

  async search(experimentIds: string[], filter: { name?: string; sourceRunId?: string } = {}): Promise<LoggedModel[]> {
    if (!this.supported) return [];
    const where = ["lifecycle_stage = 'active'"];
    const params: SqlValue[] = [];
    if (experimentIds.length) {
      where.push(`experiment_id IN (${experimentIds.map(() => '?').join(',')})`);
      params.push(...experimentIds.map(Number));
    }
    if (filter.name !== undefined) { where.push('name = ?'); params.push(filter.name); }
    if (filter.sourceRunId !== undefined) { where.push('source_run_id = ?'); params.push(filter.sourceRunId); }
    const rows = await this.db.query(
      `SELECT * FROM logged_models WHERE ${where.join(' AND ')} ORDER BY creation_timestamp_ms DESC, model_id ASC LIMIT 1000`, params);
    return this.entities(rows);
  }

  /** log_outputs: one `inputs` row per model, RUN_OUTPUT → MODEL_OUTPUT at its step (a repeat is no error). */
  async logOutputs(runId: string, models: ModelOutput[]): Promise<void> {
    this.require();
    for (const m of models) {
      await this.db.run(
        `INSERT INTO inputs (input_uuid, source_type, source_id, destination_type, destination_id, step)
         VALUES (?, 'RUN_OUTPUT', ?, 'MODEL_OUTPUT', ?, ?) ON CONFLICT DO NOTHING`,
        [randomUUID().replace(/-/g, ''), runId, m.modelId, m.step],
      );
    }
  }

  /** _log_model_metrics: the run's metric points as the model's (idempotent on the table's primary key). */
  async logMetrics(runId: string, modelId: string, metrics: ModelMetric[]): Promise<void> {
    this.require();
    const r = await this.record(this.db, modelId);
    const eid = Number(r.experiment_id);
    await this.db.transaction(async (tx) => {
      for (const m of metrics) {
        const { value } = sanitizeMetricValue(m.value);
        await tx.run(
          `INSERT INTO logged_model_metrics (model_id, metric_name, metric_timestamp_ms, metric_step, metric_value, experiment_id, run_id, dataset_uuid, dataset_name, dataset_digest)
           VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?) ON CONFLICT DO NOTHING`,
          // NaN → 0, as MLflow's sanitize_metric_value; dataset_uuid NULL, as MLflow's _log_model_metrics leaves it
          [modelId, m.key, m.timestamp, m.step, value, eid, runId, m.datasetName ?? null, m.datasetDigest ?? null],
        );
      }
    });
  }

  private require(): void {
    if (!this.supported) throw invalidParameter('This database has no logged_models tables (MLflow < 3.0): run `mlflow db upgrade <uri>` to use logged models');
  }

  private async entities(rows: Row[]): Promise<LoggedModel[]> {
    if (!rows.length) return [];
    const ids = rows.map((r) => String(r.model_id));
    const ph = ids.map(() => '?').join(',');
    const [tags, params, metrics] = await Promise.all([
      this.db.query<{ model_id: string; tag_key: string; tag_value: string }>(`SELECT model_id, tag_key, tag_value FROM logged_model_tags WHERE model_id IN (${ph})`, ids),
      this.db.query<{ model_id: string; param_key: string; param_value: string }>(`SELECT model_id, param_key, param_value FROM logged_model_params WHERE model_id IN (${ph})`, ids),
      this.db.query<{ model_id: string; metric_name: string; metric_value: number | null; metric_timestamp_ms: number; metric_step: number }>(
        `SELECT model_id, metric_name, metric_value, metric_timestamp_ms, metric_step FROM logged_model_metrics WHERE model_id IN (${ph}) ORDER BY metric_name, metric_step, metric_timestamp_ms`, ids),
    ]);
    return rows.map((r) => {
      const id = String(r.model_id);
      return {
        modelId: id,
        experimentId: String(r.experiment_id),
        name: String(r.name),
        artifactLocation: String(r.artifact_location),
        creationTimestampMs: Number(r.creation_timestamp_ms),
        lastUpdatedTimestampMs: Number(r.last_updated_timestamp_ms),
        status: STATUS_OF_INT[Number(r.status)] ?? 'UNSPECIFIED',
        modelType: (r.model_type as string | null) ?? null,
        sourceRunId: (r.source_run_id as string | null) ?? null,
        statusMessage: (r.status_message as string | null) ?? null,
        tags: Object.fromEntries(tags.filter((t) => t.model_id === id).map((t) => [t.tag_key, t.tag_value])),
        params: Object.fromEntries(params.filter((p) => p.model_id === id).map((p) => [p.param_key, p.param_value])),
        metrics: metrics.filter((m) => m.model_id === id).map((m) => ({
          key: m.metric_name, value: m.metric_value === null ? NaN : Number(m.metric_value), timestamp: Number(m.metric_timestamp_ms), step: Number(m.metric_step),
        })),
      };
    });
  }
}

function dedupe<T extends { key: string; value: string }>(items: T[]): { key: string; value: string }[] {
  const m = new Map<string, string>();
  for (const t of items) m.set(t.key, t.value);
  return [...m].map(([key, value]) => ({ key, value }));
}
