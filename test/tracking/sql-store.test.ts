// SQLite and PostgreSQL stores: MLflow's own client reads back everything we wrote, we read what it wrote,
// and the schema we create for an empty database is the one MLflow's migrations create.
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { MLflowTracker } from '../../lib/tracking/index.js';
import { SqlStore } from '../../lib/tracking/sql/store.js';
import { SCHEMA_HEAD, SUPPORTED_REVISIONS } from '../../lib/tracking/sql/mlflow_schema.js';
import { mlflow29Python, mlflowPython } from './helpers/python.js';
import { cleanupTmp, checkReadback, SQL_MAX, tmp, trackerOptions, writeScenario } from './helpers/scenario.js';
import { createPgDatabase, startPostgres } from './helpers/services.js';
import pg from 'pg';

afterAll(cleanupTmp);

const createPgDb = (prefix: string) => createPgDatabase(inject('pgUri'), prefix);
const forPython = (uri: string) => uri.replace(/^postgresql:\/\//, 'postgresql+psycopg2://');

const backends: { name: string; make: () => Promise<{ ours: string; python: string; artifactUri?: string }> }[] = [
  {
    name: 'sqlite',
    make: async () => {
      const d = tmp('sqlite');
      const uri = `sqlite:///${join(d, 'mlflow.db')}`;
      return { ours: uri, python: uri, artifactUri: join(d, 'artifacts') };
    },
  },
  {
    name: 'postgresql',
    make: async () => {
      const uri = await createPgDb('readback');
      // also exercise the SQLAlchemy-style scheme MLflow users write
      return { ours: forPython(uri), python: forPython(uri), artifactUri: join(tmp('pgart'), 'artifacts') };
    },
  },
];

describe.each(backends)('$name store', ({ make }) => {
  it('writes everything so that Python MLflow reads it back identically', async () => {
    const b = await make();
    const t = new MLflowTracker(trackerOptions(b.ours, { artifactUri: b.artifactUri }));
    try {
      const w = await writeScenario(t, 'readback-exp', 'heimdall-localization-onnx');
      const py = await mlflowPython({ op: 'read', tracking_uri: b.python, experiment: w.experimentName, models: [w.model], history_keys: ['train/loss', 'special'] });
      checkReadback(py, w);
    } finally {
      await t.close();
    }
  });

  it('reads a run written by Python MLflow', async () => {
    const b = await make();
    // our tracker creates the schema; MLflow's client then writes into it with no migration
    const t = new MLflowTracker(trackerOptions(b.ours, { artifactUri: b.artifactUri }));
    await t.start();
    const w = await mlflowPython<{ experiment_id: string; run_id: string }>({ op: 'write', tracking_uri: b.python, experiment: 'from-python' });
    try {
      const info = await t.getRunInfo(w.run_id);
      expect(info.runName).toBe('written-by-python');
      expect(info.status).toBe('FINISHED');
      expect(info.params).toEqual({ lr: '0.01', optimizer: 'sgd' });
      expect(info.tags.origin).toBe('python');
      expect(info.tags.stage).toBe('test');
      expect(info.metrics['val/loss']).toBeCloseTo(0.2);
      expect(Number.isNaN(info.metrics.nan_metric)).toBe(true);
      expect(info.metrics.inf_metric).toBe(SQL_MAX);
      const hist = await t.getMetricHistory('val/loss', w.run_id);
      expect(hist.map((m) => [m.step, m.timestamp])).toEqual([0, 1, 2, 3, 4].map((s) => [s, 1700000000000 + s]));
      const runs = await t.searchRuns({ experimentIds: [w.experiment_id], filter: "params.optimizer = 'sgd'" });
      expect(runs.map((r) => r.info.runId)).toEqual([w.run_id]);
      expect((await t.getExperimentByName('from-python'))?.experimentId).toBe(w.experiment_id);
    } finally {
      await t.close();
    }
  });
});

describe('schema', () => {
  const ourDescription = async (uri: string) => {
    const store = /^sqlite/.test(uri) ? SqlStore.sqlite(uri.replace(/^sqlite:\/\/\//, '')) : SqlStore.postgres(uri);
    await store.open();
    await store.close();
    return mlflowPython({ op: 'describe', tracking_uri: /^sqlite/.test(uri) ? uri : forPython(uri) });
  };

  it('an empty SQLite database gets exactly the schema of the pinned MLflow', async () => {
    const d = tmp('schema');
    const theirs = await mlflowPython({ op: 'columns', tracking_uri: `sqlite:///${join(d, 'theirs.db')}` });
    const ours = await ourDescription(`sqlite:///${join(d, 'ours.db')}`);
    expect(Object.keys(ours.tables).length).toBeGreaterThan(20);
    for (const table of Object.keys(theirs.tables)) expect({ table, ...ours.tables[table] }).toEqual({ table, ...theirs.tables[table] });
    expect(Object.keys(ours.tables).sort()).toEqual(Object.keys(theirs.tables).sort());
    expect(ours.revision).toBe(theirs.revision);
    expect(ours.revision).toBe(SCHEMA_HEAD);
  });

  it('an empty PostgreSQL database gets exactly the schema of the pinned MLflow', async () => {
    const theirsUri = await createPgDb('theirs');
    const oursUri = await createPgDb('ours');
    const theirs = await mlflowPython({ op: 'columns', tracking_uri: forPython(theirsUri) });
    const ours = await ourDescription(oursUri);
    for (const table of Object.keys(theirs.tables)) expect({ table, ...ours.tables[table] }).toEqual({ table, ...theirs.tables[table] });
    expect(Object.keys(ours.tables).sort()).toEqual(Object.keys(theirs.tables).sort());
    expect(ours.revision).toBe(SCHEMA_HEAD);
    // and the database MLflow's migrations made is used as it is
    const t = new MLflowTracker(trackerOptions(theirsUri, { artifactUri: join(tmp('pgml'), 'art') }));
    const runId = await t.startRun({ runName: 'on-mlflow-made-pg' });
    t.logMetrics({ x: 2 }, 3);
    expect((await t.getRunInfo()).metrics).toEqual({ x: 2 });
    expect((await t.close()).complete).toBe(true);
    expect(runId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('accepts every supported MLflow revision (2.9 … pinned) and refuses an unknown one clearly', async () => {
    const d = tmp('rev');
    const path = join(d, 'm.db');
    const store = SqlStore.sqlite(path);
    await store.open();
    expect(SUPPORTED_REVISIONS[0]).toBe('acf3f17fdcc7');
    for (const rev of ['acf3f17fdcc7', '5b0e9adcef9c', '4465047574b1', 'f5a4f2784254', SCHEMA_HEAD]) {
      expect(SUPPORTED_REVISIONS).toContain(rev);
      await store.driver.run('UPDATE alembic_version SET version_num = ?', [rev]);
      await expect(store.ensureSchema()).resolves.toBeUndefined();
    }
    await store.driver.run("UPDATE alembic_version SET version_num = 'ffffffffffff'");
    await expect(store.ensureSchema()).rejects.toThrow(/Unsupported MLflow database schema revision 'ffffffffffff'.*mlflow db upgrade/);
    await store.close();
  });

  it('opens a database created by MLflow itself, as it is', async () => {
    const d = tmp('byml');
    const uri = `sqlite:///${join(d, 'mlflow.db')}`;
    await mlflowPython({ op: 'columns', tracking_uri: uri });
    const t = new MLflowTracker(trackerOptions(uri, { artifactUri: join(d, 'art') }));
    const id = await t.startRun({ runName: 'on-mlflow-db' });
    t.logMetrics({ x: 1 }, 0);
    const r = await t.close();
    expect(r.complete).toBe(true);
    const py = await mlflowPython({ op: 'read', tracking_uri: uri, experiment: 'heimdall-localization', artifacts: false });
    expect(py.runs.map((x: any) => [x.run_id, x.status, x.metrics.x])).toEqual([[id, 'FINISHED', 1]]);
  });
});

describe('MLflow 2.9 database (oldest supported schema)', () => {
  it('is used as it is: written by heimdall-torch, read back by the MLflow 2.9 client', async () => {
    const d = tmp('ml29');
    const uri = `sqlite:///${join(d, 'mlflow.db')}`;
    const py29 = mlflow29Python();
    const created = await mlflowPython({ op: 'columns', tracking_uri: uri }, {}, py29);
    expect(created.revision).toBe('acf3f17fdcc7');
    const t = new MLflowTracker(trackerOptions(uri, { artifactUri: join(d, 'artifacts') }));
    try {
      const w = await writeScenario(t, 'on-2.9', 'model-29');
      const py = await mlflowPython({ op: 'read', tracking_uri: uri, experiment: w.experimentName, models: [w.model], history_keys: ['train/loss', 'special'] }, {}, py29);
      checkReadback(py, w);
    } finally {
      await t.close();
    }
    // and the schema was left as MLflow 2.9 made it
    const after = await mlflowPython({ op: 'describe', tracking_uri: uri }, {}, py29);
    expect(after).toEqual(created);
  });
});

describe('private PostgreSQL cluster', () => {
  it('starts and stops (used by the fault tests)', async () => {
    const s = await startPostgres();
    try {
      const uri = await s.createDatabase('x');
      const c = new pg.Client({ connectionString: uri });
      await c.connect();
      expect((await c.query('SELECT 1 AS one')).rows[0].one).toBe(1);
      await c.end();
    } finally {
      await s.destroy();
    }
  });
});

// Issue 14, finding 10: HEIMDALL_MLFLOW_CLOSE_TIMEOUT above what a Node timer holds (2³¹−1 ms) made close()'s
// deadline fire after ~1 ms: close() reported undelivered data at once while PostgreSQL was still writing it.
describe('a close deadline beyond a Node timer', () => {
  it('close() with closeTimeoutS 99999999 waits for every point to reach PostgreSQL', async () => {
    const uri = await createPgDb('huge_timeout');
    const t = new MLflowTracker(trackerOptions(uri, { closeTimeoutS: 99_999_999 }));
    const runId = await t.startRun({ runName: 'huge-timeout' });
    for (let step = 0; step < 4000; step++) t.logMetrics({ a: step, b: step / 2, c: -step, d: 1, e: 2 }, step);
    const report = await t.close();
    expect(report.complete).toBe(true);
    const c = new pg.Client({ connectionString: uri });
    await c.connect();
    try {
      const r = await c.query('SELECT count(*)::int AS n FROM metrics WHERE run_uuid = $1', [runId]);
      expect(r.rows[0].n).toBe(20_000);
    } finally {
      await c.end();
    }
  });
});
