// MLflow's SQL schema written directly, row for row as mlflow/store/tracking/sqlalchemy_store.py and
// mlflow/store/model_registry/sqlalchemy_store.py of the pinned MLflow do. One store, two drivers.
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { alreadyExists, invalidParameter, MlflowError, notFound } from '../errors.js';
import { parseFilter, parseOrderBy, type FilterClause } from '../filter.js';
import type {
  CreateLoggedModelOptions, CreateRunOptions, Experiment, LogBatch, LoggedModel, Metric, ModelMetric, ModelOutput, ModelStage, ModelVersion, RegisteredModel, Run, RunDataset, RunInfo, RunStatus,
  SearchRunsOptions, Tag, TrackingStore,
} from '../types.js';
import { sanitizeMetricValue, SQL_BATCH_LIMITS, validateAlias, validateModelName } from '../validation.js';
import { MLFLOW_VERSION, POSTGRES_DDL, SCHEMA_HEAD, SQLITE_DDL, SUPPORTED_REVISIONS } from './mlflow_schema.js';
import { PostgresDriver, SqliteDriver, type Row, type SqlDriver, type SqlExecutor, type SqlValue } from './driver.js';
import { SqlLoggedModels } from './logged_models.js';
import { hasDatasetTables, logDatasetInputs, runDatasets } from './datasets.js';
import type { DatasetInput } from '../datasets.js';

const ALL_STAGES = ['None', 'Staging', 'Production', 'Archived'] as const;
const ACTIVE_STAGES = ['Staging', 'Production'];
const STAGE_DELETED_INTERNAL = 'Deleted_Internal';

export function canonicalStage(stage: string): ModelStage {
  const s = ALL_STAGES.find((x) => x.toLowerCase() === stage.toLowerCase());
  if (!s) throw invalidParameter(`Invalid Model Version stage: ${stage}. Value must be one of ${ALL_STAGES.join(', ')}.`);
  return s;
}

/** Appends path segments to a URI or path like MLflow's append_to_uri_path. */
export function appendToUri(base: string, ...parts: string[]): string {
  return [base.replace(/\/+$/, ''), ...parts.map((p) => p.replace(/^\/+|\/+$/g, ''))].join('/');
}

const RUN_COLUMNS = 'run_uuid, name, user_id, status, start_time, end_time, artifact_uri, experiment_id, lifecycle_stage';

export class SqlStore implements TrackingStore {
  readonly kind: 'sqlite' | 'postgresql';
  readonly limits = SQL_BATCH_LIMITS;
  private readonly db: SqlDriver;
  private readonly artifactRoot: string;
  private readonly loggedModels: SqlLoggedModels;

  /** `artifactRoot`: default root for experiments created without a location (MLflow: ./mlruns). */
  constructor(driver: SqlDriver, artifactRoot = resolve('mlruns')) {
    this.db = driver;
    this.kind = driver.dialect;
    this.artifactRoot = artifactRoot;
    this.loggedModels = new SqlLoggedModels(driver);
  }

  static sqlite(path: string, artifactRoot?: string): SqlStore {
    return new SqlStore(new SqliteDriver(path), artifactRoot);
  }
  static postgres(uri: string, artifactRoot?: string): SqlStore {
    return new SqlStore(new PostgresDriver(uri), artifactRoot);
  }

  get driver(): SqlDriver {
    return this.db;
  }

  defaultArtifactLocation(experimentId: string): string {
    return appendToUri(this.artifactRoot, experimentId);
  }

  // -------------------------------------------------------------------------------------------------------
  // Schema
  // -------------------------------------------------------------------------------------------------------
  async open(): Promise<void> {
    await this.ensureSchema();
    this.loggedModels.detect(await this.tableNames(this.db));
  }

  private async tableNames(ex: SqlExecutor): Promise<string[]> {
    const rows = this.kind === 'sqlite'
      ? await ex.query<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
      : await ex.query<{ name: string }>('SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema()');
    return rows.map((r) => r.name);
  }

  /** Creates the pinned MLflow's schema in an empty database, or checks the revision of an existing one. */
  async ensureSchema(): Promise<void> {
    const existing = await this.tableNames(this.db);
    if (existing.some((t) => !t.startsWith('alembic_'))) {
      await this.checkRevision();
      await this.ensureDefaultExperiment();
      return;
    }
    await this.db.transaction(async (tx) => {
      if (this.kind === 'postgresql') await tx.query('SELECT pg_advisory_xact_lock(72417001)');
      const again = await this.tableNames(tx);
      if (again.some((t) => !t.startsWith('alembic_'))) return; // another process created it meanwhile
      if (again.includes('alembic_version')) await tx.run('DROP TABLE alembic_version');
      const ddl = this.kind === 'sqlite' ? SQLITE_DDL : POSTGRES_DDL;
      for (const stmt of ddl) {
        if (this.kind === 'postgresql' && /^SELECT pg_catalog\./i.test(stmt)) continue;
        await tx.run(stmt);
      }
      await tx.run('INSERT INTO alembic_version (version_num) VALUES (?)', [SCHEMA_HEAD]);
    });
    await this.checkRevision();
    await this.ensureDefaultExperiment();
  }

  private async checkRevision(): Promise<void> {
    let rev: string | undefined;
    try {
      rev = (await this.db.query<{ version_num: string }>('SELECT version_num FROM alembic_version'))[0]?.version_num;
    } catch {
      rev = undefined;
    }
    if (!rev) {
      throw new MlflowError(
        'This database has tables but no alembic_version: it was not created by MLflow. Use an empty database or one created by MLflow ≥ 2.9.',
        'INVALID_STATE',
      );
    }
    if (!SUPPORTED_REVISIONS.includes(rev)) {
      throw new MlflowError(
        `Unsupported MLflow database schema revision '${rev}'. Supported: MLflow 2.9 (acf3f17fdcc7) up to ${MLFLOW_VERSION} (${SCHEMA_HEAD}). ` +
          `An older database needs 'mlflow db upgrade <uri>'; a newer one needs a newer heimdall-torch.`,
        'INVALID_STATE',
      );
    }
  }

  private async ensureDefaultExperiment(): Promise<void> {
    const rows = await this.db.query('SELECT experiment_id FROM experiments WHERE experiment_id = 0');
    if (rows.length) return;
    const now = Date.now();
    try {
      await this.db.run(
        'INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) VALUES (0, ?, ?, ?, ?, ?)',
        ['Default', this.defaultArtifactLocation('0'), 'active', now, now],
      );
    } catch (e) {
      if (!isUniqueViolation(e)) throw e;
    }
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  // -------------------------------------------------------------------------------------------------------
  // Experiments
  // -------------------------------------------------------------------------------------------------------
  private async experimentTags(ids: number[]): Promise<Map<number, Record<string, string>>> {
    const out = new Map<number, Record<string, string>>();
    if (!ids.length) return out;
    const rows = await this.db.query<{ key: string; value: string; experiment_id: number }>(
      `SELECT key, value, experiment_id FROM experiment_tags WHERE experiment_id IN (${ids.map(() => '?').join(',')})`, ids);
    for (const r of rows) {
      const m = out.get(Number(r.experiment_id)) ?? {};
      m[r.key] = r.value;
      out.set(Number(r.experiment_id), m);
    }
    return out;
  }

  private async toExperiments(rows: Row[]): Promise<Experiment[]> {
    const tags = await this.experimentTags(rows.map((r) => Number(r.experiment_id)));
    return rows.map((r) => ({
      experimentId: String(r.experiment_id),
      name: String(r.name),
      artifactLocation: String(r.artifact_location ?? ''),
      lifecycleStage: r.lifecycle_stage as Experiment['lifecycleStage'],
      creationTime: numOrNull(r.creation_time),
      lastUpdateTime: numOrNull(r.last_update_time),
      tags: tags.get(Number(r.experiment_id)) ?? {},
    }));
  }

  async getExperimentByName(name: string): Promise<Experiment | null> {
    const rows = await this.db.query('SELECT * FROM experiments WHERE name = ?', [name]);
    return rows.length ? (await this.toExperiments(rows))[0]! : null;
  }

  async getExperiment(experimentId: string): Promise<Experiment> {
    const id = Number(experimentId);
    if (!Number.isInteger(id)) throw invalidParameter(`Invalid experiment ID '${experimentId}'`);
    const rows = await this.db.query('SELECT * FROM experiments WHERE experiment_id = ?', [id]);
    if (!rows.length) throw notFound(`No Experiment with id=${experimentId} exists`);
    return (await this.toExperiments(rows))[0]!;
  }

  async createExperiment(name: string, artifactLocation: string | undefined, tags: Tag[]): Promise<string> {
    if (!name) throw invalidParameter("Invalid experiment name: ''");
    try {
      return await this.db.transaction(async (tx) => {
        const now = Date.now();
        const rows = await tx.query<{ experiment_id: number }>(
          'INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) VALUES (?, ?, ?, ?, ?) RETURNING experiment_id',
          [name, artifactLocation ?? null, 'active', now, now],
        );
        const id = Number(rows[0]!.experiment_id);
        if (!artifactLocation) {
          await tx.run('UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?', [this.defaultArtifactLocation(String(id)), id]);
        }
        for (const t of dedupeTags(tags)) {
          await tx.run('INSERT INTO experiment_tags (key, value, experiment_id) VALUES (?, ?, ?)', [t.key, t.value, id]);
        }
        return String(id);
      });
    } catch (e) {
      if (isUniqueViolation(e)) throw alreadyExists(`Experiment(name=${name}) already exists.`);
      throw e;
    }
  }

  async searchExperiments(filter?: string, maxResults = 1000): Promise<Experiment[]> {
    let where = "lifecycle_stage = 'active'";
    const params: SqlValue[] = [];
    if (filter) {
      const m = /^\s*name\s*(=|LIKE|ILIKE)\s*'([^']*)'\s*$/i.exec(filter);
      if (!m) throw invalidParameter(`Unsupported experiment filter '${filter}' (supported: name = '…', name LIKE '…')`);
      const op = m[1]!.toUpperCase() === 'ILIKE' ? (this.kind === 'sqlite' ? 'LIKE' : 'ILIKE') : m[1]!.toUpperCase();
      where += ` AND name ${op} ?`;
      params.push(m[2]!);
    }
    const rows = await this.db.query(`SELECT * FROM experiments WHERE ${where} ORDER BY experiment_id DESC LIMIT ${Math.floor(maxResults)}`, params);
    return this.toExperiments(rows);
  }

  // -------------------------------------------------------------------------------------------------------
  // Runs
  // -------------------------------------------------------------------------------------------------------
  async createRun(o: CreateRunOptions): Promise<RunInfo> {
    const exp = await this.getExperiment(o.experimentId);
    if (exp.lifecycleStage !== 'active') throw new MlflowError(`The experiment ${o.experimentId} must be in the 'active' state. Current state is ${exp.lifecycleStage}.`, 'INVALID_PARAMETER_VALUE');
    const runId = randomUUID().replace(/-/g, '');
    const tags = dedupeTags(o.tags);
    const tagName = tags.find((t) => t.key === 'mlflow.runName')?.value;
    if (o.runName && tagName && o.runName !== tagName) {
      throw invalidParameter(`Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values (run_name='${o.runName}', mlflow.runName='${tagName}').`);
    }
    const runName = o.runName || tagName || randomRunName();
    if (!tagName) tags.push({ key: 'mlflow.runName', value: runName });
    const artifactUri = appendToUri(exp.artifactLocation, runId, 'artifacts');
    await this.db.transaction(async (tx) => {
      await tx.run(
        `INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time)
         VALUES (?, ?, 'UNKNOWN', '', '', ?, 'RUNNING', ?, NULL, '', 'active', ?, ?, NULL)`,
        [runId, runName, o.userId, o.startTime, artifactUri, Number(o.experimentId)],
      );
      await this.insertTags(tx, runId, tags);
    });
    return {
      runId, runName, experimentId: o.experimentId, userId: o.userId, status: 'RUNNING', startTime: o.startTime, endTime: null,
      artifactUri, lifecycleStage: 'active',
    };
  }

  async updateRun(runId: string, status: RunStatus, endTime: number | null): Promise<void> {
    const info = await this.getRunRow(this.db, runId);
    if (info.lifecycle_stage !== 'active') throw invalidParameter(`The run ${runId} must be in the 'active' state. Current state is ${String(info.lifecycle_stage)}.`);
    await this.db.run('UPDATE runs SET status = ?, end_time = COALESCE(?, end_time) WHERE run_uuid = ?', [status, endTime, runId]);
  }

  private async getRunRow(ex: SqlExecutor, runId: string): Promise<Row> {
    const rows = await ex.query(`SELECT ${RUN_COLUMNS} FROM runs WHERE run_uuid = ?`, [runId]);
    if (!rows.length) throw notFound(`Run with id=${runId} not found`);
    return rows[0]!;
  }

  private toRunInfo(r: Row): RunInfo {
    return {
      runId: String(r.run_uuid),
      runName: String(r.name ?? ''),
      experimentId: String(r.experiment_id),
      userId: String(r.user_id ?? ''),
      status: r.status as RunStatus,
      startTime: numOrNull(r.start_time),
      endTime: numOrNull(r.end_time),
      artifactUri: String(r.artifact_uri ?? ''),
      lifecycleStage: r.lifecycle_stage as RunInfo['lifecycleStage'],
    };
  }

  private async runsData(runIds: string[]): Promise<Map<string, Run>> {
    const out = new Map<string, Run>();
    if (!runIds.length) return out;
    for (let i = 0; i < runIds.length; i += 500) {
      const ids = runIds.slice(i, i + 500);
      const ph = ids.map(() => '?').join(',');
      const [runs, metrics, params, tags] = await Promise.all([
        this.db.query(`SELECT ${RUN_COLUMNS} FROM runs WHERE run_uuid IN (${ph})`, ids),
        this.db.query<{ run_uuid: string; key: string; value: number; is_nan: unknown }>(`SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN (${ph})`, ids),
        this.db.query<{ run_uuid: string; key: string; value: string }>(`SELECT run_uuid, key, value FROM params WHERE run_uuid IN (${ph})`, ids),
        this.db.query<{ run_uuid: string; key: string; value: string }>(`SELECT run_uuid, key, value FROM tags WHERE run_uuid IN (${ph})`, ids),
      ]);
      for (const r of runs) out.set(String(r.run_uuid), { info: this.toRunInfo(r), metrics: {}, params: {}, tags: {} });
      for (const m of metrics) { const run = out.get(m.run_uuid); if (run) run.metrics[m.key] = truthy(m.is_nan) ? NaN : Number(m.value); }
      for (const p of params) { const run = out.get(p.run_uuid); if (run) run.params[p.key] = p.value; }
      for (const t of tags) { const run = out.get(t.run_uuid); if (run) run.tags[t.key] = t.value; }
    }
    return out;
  }

  async getRun(runId: string): Promise<Run> {
    const run = (await this.runsData([runId])).get(runId);
    if (!run) throw notFound(`Run with id=${runId} not found`);
    return run;
  }

  private async insertTags(tx: SqlExecutor, runId: string, tags: Tag[]): Promise<void> {
    if (!tags.length) return;
    const rows = dedupeTags(tags);
    // Upsert: a tag may be overwritten (MLflow's set_tag semantics).
    for (let i = 0; i < rows.length; i += 100) {
      const chunk = rows.slice(i, i + 100);
      await tx.run(
        `INSERT INTO tags (key, value, run_uuid) VALUES ${chunk.map(() => '(?, ?, ?)').join(', ')} ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value`,
        chunk.flatMap((t) => [t.key, t.value, runId]),
      );
    }
    const runName = rows.find((t) => t.key === 'mlflow.runName');
    if (runName) await tx.run('UPDATE runs SET name = ? WHERE run_uuid = ?', [runName.value, runId]);
  }

  /** log_batch: params (re-logging another value is an error), metrics (idempotent), latest_metrics, tags. */
  async logBatch(b: LogBatch): Promise<void> {
    if (!b.metrics.length && !b.params.length && !b.tags.length) return;
    await this.db.transaction(async (tx) => {
      const run = await this.getRunRow(tx, b.runId);
      if (run.lifecycle_stage !== 'active') throw invalidParameter(`The run ${b.runId} must be in the 'active' state. Current state is ${String(run.lifecycle_stage)}.`);
      if (b.params.length) await this.logParams(tx, b.runId, b.params);
      if (b.metrics.length) await this.logMetrics(tx, b.runId, b.metrics);
      if (b.tags.length) await this.insertTags(tx, b.runId, b.tags);
    });
  }

  /** Dataset inputs (sql/datasets.ts); a database without the dataset tables skips them with one warning. */
  async logInputs(runId: string, datasets: DatasetInput[]): Promise<string[]> {
    this.datasetTables ??= await hasDatasetTables(this.db);
    if (!this.datasetTables) {
      if (this.datasetsWarned) return [];
      this.datasetsWarned = true;
      return ['this MLflow database has no datasets/inputs/input_tags tables (MLflow < 2.4): dataset inputs are not logged'];
    }
    await logDatasetInputs(this.db, runId, datasets);
    return [];
  }
  private datasetTables: boolean | undefined;
  private datasetsWarned = false;

  async getRunDatasets(runId: string): Promise<RunDataset[]> {
    this.datasetTables ??= await hasDatasetTables(this.db);
    return this.datasetTables ? runDatasets(this.db, runId) : [];
  }

  private async logParams(tx: SqlExecutor, runId: string, params: { key: string; value: string }[]): Promise<void> {
    const seen = new Map<string, string>();
    for (const p of params) {
      const prev = seen.get(p.key);
      if (prev !== undefined && prev !== p.value) {
        throw invalidParameter(`Duplicate parameter keys have been submitted: ['${p.key}']. Please ensure the request contains only one param value per param key.`);
      }
      seen.set(p.key, p.value);
    }
    const keys = [...seen.keys()];
    const existing = new Map<string, string>();
    for (let i = 0; i < keys.length; i += 500) {
      const ks = keys.slice(i, i + 500);
      const rows = await tx.query<{ key: string; value: string }>(`SELECT key, value FROM params WHERE run_uuid = ? AND key IN (${ks.map(() => '?').join(',')})`, [runId, ...ks]);
      for (const r of rows) existing.set(r.key, r.value);
    }
    const conflicts = keys.filter((k) => existing.has(k) && existing.get(k) !== seen.get(k));
    if (conflicts.length) {
      throw invalidParameter(
        `Changing param values is not allowed. Params were already logged='${JSON.stringify(conflicts.map((k) => ({ key: k, old_value: existing.get(k), new_value: seen.get(k) })))}' for run ID='${runId}'.`,
      );
    }
    const fresh = keys.filter((k) => !existing.has(k));
    for (let i = 0; i < fresh.length; i += 100) {
      const chunk = fresh.slice(i, i + 100);
      await tx.run(`INSERT INTO params (key, value, run_uuid) VALUES ${chunk.map(() => '(?, ?, ?)').join(', ')}`, chunk.flatMap((k) => [k, seen.get(k)!, runId]));
    }
  }

  private async logMetrics(tx: SqlExecutor, runId: string, metrics: Metric[]): Promise<void> {
    const latest = new Map<string, { value: number; timestamp: number; step: number; isNan: boolean }>();
    if (this.kind === 'postgresql') {
      // One statement with six array parameters (unnest) instead of thousands of scalar parameters.
      const cols = { k: [] as string[], v: [] as number[], t: [] as number[], s: [] as number[], n: [] as boolean[] };
      for (const m of metrics) {
        const { value, isNan } = sanitizeMetricValue(m.value);
        cols.k.push(m.key); cols.v.push(value); cols.t.push(m.timestamp); cols.s.push(m.step); cols.n.push(isNan);
        const cur = latest.get(m.key);
        if (!cur || compareMetric(m.step, m.timestamp, value, cur) > 0) latest.set(m.key, { value, timestamp: m.timestamp, step: m.step, isNan });
      }
      await tx.run(
        `INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan)
         SELECT k, v, t, ?, s, n FROM unnest(?::varchar[], ?::float8[], ?::bigint[], ?::bigint[], ?::boolean[]) AS u(k, v, t, s, n)
         ON CONFLICT DO NOTHING`,
        [runId, cols.k, cols.v, cols.t, cols.s, cols.n] as unknown as SqlValue[],
      );
      await this.upsertLatest(tx, runId, latest);
      return;
    }
    const rows: SqlValue[] = [];
    let n = 0;
    const flushRows = async () => {
      if (!n) return;
      const tuples = new Array(n).fill('(?, ?, ?, ?, ?, ?)').join(', ');
      // Idempotent on MLflow's primary key (key, timestamp, step, run_uuid, value, is_nan): a batch
      // delivered twice (retry after a lost reply) lands once.
      await tx.run(`INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES ${tuples} ON CONFLICT DO NOTHING`, rows);
      rows.length = 0;
      n = 0;
    };
    for (const m of metrics) {
      const { value, isNan } = sanitizeMetricValue(m.value);
      rows.push(m.key, value, m.timestamp, runId, m.step, isNan);
      if (++n === 1000) await flushRows();
      const cur = latest.get(m.key);
      if (!cur || compareMetric(m.step, m.timestamp, value, cur) > 0) latest.set(m.key, { value, timestamp: m.timestamp, step: m.step, isNan });
    }
    await flushRows();
    await this.upsertLatest(tx, runId, latest);
  }

  /**
   * latest_metrics: one row per key, the most recent by (step, timestamp, value), like
   * _update_latest_metrics_if_necessary. Keys in sorted order so concurrent writers lock alike.
   */
  private async upsertLatest(tx: SqlExecutor, runId: string, latest: Map<string, { value: number; timestamp: number; step: number; isNan: boolean }>): Promise<void> {
    const keys = [...latest.keys()].sort();
    for (let i = 0; i < keys.length; i += 200) {
      const chunk = keys.slice(i, i + 200);
      const params: SqlValue[] = [];
      for (const k of chunk) { const l = latest.get(k)!; params.push(k, l.value, l.timestamp, l.step, l.isNan, runId); }
      await tx.run(
        `INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES ${chunk.map(() => '(?, ?, ?, ?, ?, ?)').join(', ')}
         ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value, timestamp = excluded.timestamp, step = excluded.step, is_nan = excluded.is_nan
         WHERE (excluded.step, excluded.timestamp, excluded.value) > (latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)`,
        params,
      );
    }
  }

  async getMetricHistory(runId: string, key: string): Promise<Metric[]> {
    const rows = await this.db.query<{ key: string; value: number; timestamp: number; step: number; is_nan: unknown }>(
      'SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = ? AND key = ? ORDER BY step, timestamp, value', [runId, key]);
    return rows.map((r) => ({ key: r.key, value: truthy(r.is_nan) ? NaN : Number(r.value), timestamp: Number(r.timestamp), step: Number(r.step) }));
  }

  async searchRuns(o: SearchRunsOptions): Promise<Run[]> {
    const clauses = parseFilter(o.filter);
    const orderBy = parseOrderBy(o.orderBy);
    const params: SqlValue[] = [];
    const where: string[] = [];
    if (o.experimentIds?.length) {
      where.push(`runs.experiment_id IN (${o.experimentIds.map(() => '?').join(',')})`);
      params.push(...o.experimentIds.map(Number));
    }
    const view = o.runViewType ?? 'ACTIVE_ONLY';
    if (view === 'ACTIVE_ONLY') where.push("runs.lifecycle_stage = 'active'");
    else if (view === 'DELETED_ONLY') where.push("runs.lifecycle_stage = 'deleted'");
    for (const c of clauses) where.push(this.clauseSql(c, params));
    const joins: string[] = [];
    const order: string[] = [];
    orderBy.forEach((ob, i) => {
      const dir = ob.ascending ? 'ASC' : 'DESC';
      if (ob.type === 'attribute') {
        const col = attributeColumn(ob.key);
        order.push(`(${col} IS NULL) ASC, ${col} ${dir}`);
        return;
      }
      const alias = `ob${i}`;
      const table = ob.type === 'metric' ? 'latest_metrics' : ob.type === 'param' ? 'params' : 'tags';
      joins.push(`LEFT JOIN ${table} ${alias} ON ${alias}.run_uuid = runs.run_uuid AND ${alias}.key = ?`);
      order.push(ob.type === 'metric'
        ? `(${alias}.value IS NULL OR ${alias}.is_nan = ${this.bool(true)}) ASC, ${alias}.value ${dir}`
        : `(${alias}.value IS NULL) ASC, ${alias}.value ${dir}`);
    });
    order.push('runs.start_time DESC', 'runs.run_uuid ASC');
    const joinParams = orderBy.filter((ob) => ob.type !== 'attribute').map((ob) => ob.key);
    const max = Math.min(Math.max(1, Math.floor(o.maxResults ?? 1000)), 50000);
    const sql = `SELECT runs.run_uuid FROM runs ${joins.join(' ')} ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY ${order.join(', ')} LIMIT ${max}`;
    const rows = await this.db.query<{ run_uuid: string }>(sql, [...joinParams, ...params]);
    const ids = rows.map((r) => String(r.run_uuid));
    const data = await this.runsData(ids);
    return ids.map((id) => data.get(id)!).filter(Boolean);
  }

  private bool(b: boolean): string {
    return this.kind === 'sqlite' ? (b ? '1' : '0') : b ? 'true' : 'false';
  }

  private clauseSql(c: FilterClause, params: SqlValue[]): string {
    const cmp = (col: string): string => {
      if (c.comparator === 'IN' || c.comparator === 'NOT IN') {
        const list = c.value as string[];
        params.push(...list);
        return `${col} ${c.comparator} (${list.map(() => '?').join(',') || 'NULL'})`;
      }
      params.push(c.value as SqlValue);
      if (c.comparator === 'LIKE') return this.kind === 'sqlite' ? `${col} GLOB ?` : `${col} LIKE ?`;
      if (c.comparator === 'ILIKE') return this.kind === 'sqlite' ? `LOWER(${col}) LIKE LOWER(?)` : `${col} ILIKE ?`;
      return `${col} ${c.comparator} ?`;
    };
    if (c.comparator === 'LIKE' && this.kind === 'sqlite') {
      // SQLite's LIKE ignores case; MLflow's LIKE is case-sensitive: translate the pattern to GLOB.
      c = { ...c, value: likeToGlob(String(c.value)) };
    }
    if (c.type === 'attribute') return cmp(attributeColumn(c.key));
    if (c.type === 'metric') {
      params.push(c.key);
      return `EXISTS (SELECT 1 FROM latest_metrics f WHERE f.run_uuid = runs.run_uuid AND f.key = ? AND f.is_nan = ${this.bool(false)} AND ${cmp('f.value')})`;
    }
    const table = c.type === 'param' ? 'params' : 'tags';
    params.push(c.key);
    return `EXISTS (SELECT 1 FROM ${table} f WHERE f.run_uuid = runs.run_uuid AND f.key = ? AND ${cmp('f.value')})`;
  }

  // -------------------------------------------------------------------------------------------------------
  // Logged models (MLflow 3): sql/logged_models.ts
  // -------------------------------------------------------------------------------------------------------
  async createLoggedModel(o: CreateLoggedModelOptions): Promise<LoggedModel | null> {
    return this.loggedModels.create(o, await this.getExperiment(o.experimentId));
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
  async logOutputs(runId: string, models: ModelOutput[]): Promise<void> {
    const run = await this.getRunRow(this.db, runId);
    if (run.lifecycle_stage !== 'active') throw invalidParameter(`The run ${runId} must be in the 'active' state. Current state is ${String(run.lifecycle_stage)}.`);
    return this.loggedModels.logOutputs(runId, models);
  }
  logLoggedModelMetrics(runId: string, modelId: string, metrics: ModelMetric[]): Promise<void> {
    return this.loggedModels.logMetrics(runId, modelId, metrics);
  }

  // -------------------------------------------------------------------------------------------------------
  // Model registry
  // -------------------------------------------------------------------------------------------------------
  async getRegisteredModel(name: string): Promise<RegisteredModel | null> {
    const rows = await this.db.query('SELECT name, creation_time, last_updated_time, description FROM registered_models WHERE name = ?', [name]);
    if (!rows.length) return null;
    const r = rows[0]!;
    const tags = await this.db.query<{ key: string; value: string }>('SELECT key, value FROM registered_model_tags WHERE name = ?', [name]);
    const aliases = await this.db.query<{ alias: string; version: number }>('SELECT alias, version FROM registered_model_aliases WHERE name = ?', [name]);
    return {
      name,
      creationTimestamp: numOrNull(r.creation_time),
      lastUpdatedTimestamp: numOrNull(r.last_updated_time),
      description: (r.description as string | null) ?? null,
      tags: Object.fromEntries(tags.map((t) => [t.key, t.value])),
      aliases: Object.fromEntries(aliases.map((a) => [a.alias, String(a.version)])),
      latestVersions: await this.getLatestVersions(name),
    };
  }

  async createRegisteredModel(name: string, description: string | undefined, tags: Tag[]): Promise<void> {
    validateModelName(name);
    const now = Date.now();
    try {
      await this.db.transaction(async (tx) => {
        await tx.run('INSERT INTO registered_models (name, creation_time, last_updated_time, description) VALUES (?, ?, ?, ?)', [name, now, now, description ?? null]);
        for (const t of dedupeTags(tags)) await tx.run('INSERT INTO registered_model_tags (key, value, name) VALUES (?, ?, ?)', [t.key, t.value, name]);
      });
    } catch (e) {
      if (isUniqueViolation(e)) throw alreadyExists(`Registered Model (name=${name}) already exists.`);
      throw e;
    }
  }

  async updateRegisteredModelDescription(name: string, description: string): Promise<void> {
    const n = await this.db.run('UPDATE registered_models SET description = ?, last_updated_time = ? WHERE name = ?', [description, Date.now(), name]);
    if (!n) throw notFound(`Registered Model with name=${name} not found`);
  }

  private async versionTagsAndAliases(name: string): Promise<{ tags: Map<number, Record<string, string>>; aliases: Map<number, string[]> }> {
    const tags = new Map<number, Record<string, string>>();
    const aliases = new Map<number, string[]>();
    for (const t of await this.db.query<{ version: number; key: string; value: string }>('SELECT version, key, value FROM model_version_tags WHERE name = ?', [name])) {
      const m = tags.get(Number(t.version)) ?? {};
      m[t.key] = t.value;
      tags.set(Number(t.version), m);
    }
    for (const a of await this.db.query<{ version: number; alias: string }>('SELECT version, alias FROM registered_model_aliases WHERE name = ?', [name])) {
      const l = aliases.get(Number(a.version)) ?? [];
      l.push(a.alias);
      aliases.set(Number(a.version), l);
    }
    return { tags, aliases };
  }

  private toVersion(r: Row, extra: { tags: Map<number, Record<string, string>>; aliases: Map<number, string[]> }): ModelVersion {
    const v = Number(r.version);
    return {
      name: String(r.name),
      version: String(v),
      creationTimestamp: numOrNull(r.creation_time),
      lastUpdatedTimestamp: numOrNull(r.last_updated_time),
      currentStage: String(r.current_stage),
      description: (r.description as string | null) ?? null,
      source: String(r.source ?? ''),
      runId: (r.run_id as string | null) ?? null,
      status: String(r.status),
      statusMessage: (r.status_message as string | null) ?? null,
      tags: extra.tags.get(v) ?? {},
      aliases: (extra.aliases.get(v) ?? []).sort(),
    };
  }

  async createModelVersion(name: string, source: string, runId: string | null, description: string | undefined, tags: Tag[], modelId?: string | null): Promise<ModelVersion> {
    validateModelName(name);
    // MLflow 3: a `models:/<model_id>` source is stored where the logged model's artifacts are, with its run.
    let storageLocation = source;
    const fromModel = /^models:\/(m-[0-9a-f]{32})\/?$/.exec(source)?.[1] ?? modelId ?? null;
    if (fromModel) {
      const model = await this.loggedModels.get(fromModel);
      if (/^models:/.test(source)) storageLocation = model.artifactLocation;
      runId = runId ?? model.sourceRunId;
    }
    for (let attempt = 0; ; attempt++) {
      try {
        const version = await this.db.transaction(async (tx) => {
          const now = Date.now();
          const n = await tx.run('UPDATE registered_models SET last_updated_time = ? WHERE name = ?', [now, name]);
          if (!n) throw notFound(`Registered Model with name=${name} not found`);
          const max = await tx.query<{ v: number | null }>('SELECT MAX(version) AS v FROM model_versions WHERE name = ?', [name]);
          const version = Number(max[0]?.v ?? 0) + 1;
          await tx.run(
            `INSERT INTO model_versions (name, version, creation_time, last_updated_time, description, user_id, current_stage, source, run_id, status, status_message, run_link, storage_location)
             VALUES (?, ?, ?, ?, ?, NULL, 'None', ?, ?, 'READY', NULL, NULL, ?)`,
            [name, version, now, now, description ?? null, source, runId, storageLocation],
          );
          for (const t of dedupeTags(tags)) await tx.run('INSERT INTO model_version_tags (key, value, name, version) VALUES (?, ?, ?, ?)', [t.key, t.value, name, version]);
          return version;
        });
        // The logged model lists its registrations, as MLflow's set_model_versions_tags after create_model_version.
        if (fromModel) await this.loggedModels.addModelVersion(fromModel, name, version);
        return this.getModelVersion(name, String(version));
      } catch (e) {
        if (isUniqueViolation(e) && attempt < 5) continue;
        throw e;
      }
    }
  }

  async getModelVersion(name: string, version: string): Promise<ModelVersion> {
    const rows = await this.db.query('SELECT * FROM model_versions WHERE name = ? AND version = ? AND current_stage <> ?', [name, Number(version), STAGE_DELETED_INTERNAL]);
    if (!rows.length) throw notFound(`Model Version (name=${name}, version=${version}) not found`);
    return this.toVersion(rows[0]!, await this.versionTagsAndAliases(name));
  }

  async transitionModelVersionStage(name: string, version: string, stage: ModelStage, archiveExisting: boolean): Promise<ModelVersion> {
    const target = canonicalStage(stage);
    if (archiveExisting && !ACTIVE_STAGES.includes(target)) {
      throw invalidParameter(`Model version transition cannot archive existing model versions because '${stage}' is not an Active stage. Valid stages are ${ACTIVE_STAGES.join(', ')}`);
    }
    await this.db.transaction(async (tx) => {
      const now = Date.now();
      const exists = await tx.query('SELECT version FROM model_versions WHERE name = ? AND version = ? AND current_stage <> ?', [name, Number(version), STAGE_DELETED_INTERNAL]);
      if (!exists.length) throw notFound(`Model Version (name=${name}, version=${version}) not found`);
      if (archiveExisting) {
        await tx.run("UPDATE model_versions SET current_stage = 'Archived', last_updated_time = ? WHERE name = ? AND version <> ? AND current_stage = ?", [now, name, Number(version), target]);
      }
      await tx.run('UPDATE model_versions SET current_stage = ?, last_updated_time = ? WHERE name = ? AND version = ?', [target, now, name, Number(version)]);
      await tx.run('UPDATE registered_models SET last_updated_time = ? WHERE name = ?', [now, name]);
    });
    return this.getModelVersion(name, version);
  }

  async getLatestVersions(name: string, stages?: string[]): Promise<ModelVersion[]> {
    const model = await this.db.query('SELECT name FROM registered_models WHERE name = ?', [name]);
    if (!model.length) throw notFound(`Registered Model with name=${name} not found`);
    const wanted = new Set((stages?.length ? stages : [...ALL_STAGES]).map(canonicalStage));
    const rows = await this.db.query('SELECT * FROM model_versions WHERE name = ? AND current_stage <> ? ORDER BY version DESC', [name, STAGE_DELETED_INTERNAL]);
    const extra = await this.versionTagsAndAliases(name);
    const seen = new Set<string>();
    const out: ModelVersion[] = [];
    for (const r of rows) {
      const st = String(r.current_stage);
      if (seen.has(st)) continue;
      seen.add(st);
      if (wanted.has(st as ModelStage)) out.push(this.toVersion(r, extra));
    }
    return out.sort((a, b) => Number(a.version) - Number(b.version));
  }

  async setRegisteredModelAlias(name: string, alias: string, version: string): Promise<void> {
    validateAlias(alias, true);
    await this.getModelVersion(name, version);
    await this.db.run(
      'INSERT INTO registered_model_aliases (alias, version, name) VALUES (?, ?, ?) ON CONFLICT DO NOTHING', [alias, Number(version), name]);
    await this.db.run('UPDATE registered_model_aliases SET version = ? WHERE name = ? AND alias = ?', [Number(version), name, alias]);
  }

  async deleteRegisteredModelAlias(name: string, alias: string): Promise<void> {
    validateAlias(alias, false);
    const model = await this.db.query('SELECT name FROM registered_models WHERE name = ?', [name]);
    if (!model.length) throw notFound(`Registered Model with name=${name} not found`);
    await this.db.run('DELETE FROM registered_model_aliases WHERE name = ? AND alias = ?', [name, alias]);
  }

  async getModelVersionByAlias(name: string, alias: string): Promise<ModelVersion> {
    validateAlias(alias, false);
    if (alias.toLowerCase() === 'latest') {
      const all = await this.getLatestVersions(name);
      if (!all.length) throw notFound(`Latest version not found for model ${name}.`);
      return all.reduce((a, b) => (Number(a.version) > Number(b.version) ? a : b));
    }
    const rows = await this.db.query<{ version: number }>('SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?', [name, alias]);
    if (!rows.length) throw invalidParameter(`Registered model alias ${alias} not found.`);
    return this.getModelVersion(name, String(rows[0]!.version));
  }
}

// -----------------------------------------------------------------------------------------------------------
function numOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}
function truthy(v: unknown): boolean {
  return v === true || v === 1 || v === '1' || v === 't';
}
function compareMetric(step: number, ts: number, value: number, cur: { step: number; timestamp: number; value: number }): number {
  return step - cur.step || ts - cur.timestamp || value - cur.value;
}
function dedupeTags(tags: Tag[]): Tag[] {
  const m = new Map<string, string>();
  for (const t of tags) m.set(t.key, t.value);
  return [...m].map(([key, value]) => ({ key, value }));
}
function attributeColumn(key: string): string {
  const map: Record<string, string> = {
    run_id: 'runs.run_uuid', run_name: 'runs.name', status: 'runs.status', start_time: 'runs.start_time', end_time: 'runs.end_time',
    artifact_uri: 'runs.artifact_uri', user_id: 'runs.user_id', lifecycle_stage: 'runs.lifecycle_stage',
  };
  const col = map[key];
  if (!col) throw invalidParameter(`Invalid attribute key '${key}'`);
  return col;
}
function likeToGlob(p: string): string {
  return p.replace(/[[*?\]]/g, (c) => `[${c}]`).replace(/%/g, '*').replace(/_/g, '?');
}
export function isUniqueViolation(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  return err?.code === '23505' || err?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || err?.code === 'SQLITE_CONSTRAINT_UNIQUE' || /UNIQUE constraint failed|duplicate key value/i.test(err?.message ?? '');
}

const ADJ = ['able', 'bold', 'brave', 'calm', 'clever', 'crisp', 'eager', 'fair', 'gentle', 'glad', 'keen', 'lucid', 'merry', 'nimble', 'proud', 'quick', 'rare', 'sly', 'swift', 'wise'];
const NOUN = ['ant', 'bass', 'bear', 'crane', 'deer', 'eel', 'finch', 'fox', 'gull', 'hare', 'ibis', 'lark', 'mole', 'newt', 'owl', 'pike', 'seal', 'toad', 'wren', 'yak'];
/** MLflow-style random run name (adjective-noun-number). */
export function randomRunName(): string {
  const r = (n: number) => Math.floor(Math.random() * n);
  return `${ADJ[r(ADJ.length)]}-${NOUN[r(NOUN.length)]}-${r(1000)}`;
}
