// Faults: the database or the server stopped mid-run and restarted, concurrent trackers, close() past its
// deadline with the spool delivered by the next tracker, signals and crashes of the training process.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MLflowTracker } from '../../lib/tracking/index.js';
import { mlflowPython } from './helpers/python.js';
import { pgRows, sleep } from './helpers/pg.js';
import { cleanupTmp, tmp, trackerOptions } from './helpers/scenario.js';
import { ROOT, startMlflowServer, startPostgres, startS3, type PgServer } from './helpers/services.js';

afterAll(cleanupTmp);


/** Checks the metric rows of a run: each step exactly once per key, all of 0..n-1. */
async function expectSteps(uri: string, runId: string, key: string, n: number): Promise<void> {
  const rows = await pgRows<{ step: string; value: number }>(uri, 'SELECT step, value FROM metrics WHERE run_uuid = $1 AND key = $2 ORDER BY step, timestamp', [runId, key]);
  expect(rows.length).toBe(n);
  rows.forEach((r, i) => expect(Number(r.step)).toBe(i));
}

describe('PostgreSQL faults (private cluster)', () => {
  let server: PgServer;
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(async () => {
    await server?.destroy();
  });

  it('database stopped mid-run and restarted: every point arrives, in order, once', async () => {
    const uri = await server.createDatabase('restart');
    const t = new MLflowTracker(trackerOptions(uri, { artifactUri: join(tmp('a'), 'art') }));
    const runId = await t.startRun({ runName: 'restart' });
    const N = 3000;
    let step = 0;
    const logSome = (k: number) => {
      for (let i = 0; i < k; i++, step++) t.logMetrics({ 'train/loss': 1 / (step + 1), lr: 0.1 }, step);
    };
    logSome(1000);
    await t.flush();
    await server.stop('fast');
    // training goes on while the database is down: logging never throws or blocks
    for (let i = 0; i < 10; i++) { logSome(100); await sleep(50); }
    await sleep(500);
    expect(t.warnings.join('\n')).toMatch(/spooling to/);
    await server.start();
    logSome(N - step);
    const r = await t.close();
    expect(r.complete, r.message).toBe(true);
    expect(r.spoolDir).toBeNull();
    await expectSteps(uri, runId, 'train/loss', N);
    await expectSteps(uri, runId, 'lr', N);
    const latest = await pgRows(uri, "SELECT step FROM latest_metrics WHERE run_uuid = $1 AND key = 'train/loss'", [runId]);
    expect(Number(latest[0].step)).toBe(N - 1);
    const run = await pgRows(uri, 'SELECT status FROM runs WHERE run_uuid = $1', [runId]);
    expect(run[0].status).toBe('FINISHED');
  });

  it('close() past its deadline reports exactly what was not delivered; the next tracker delivers the spool', async () => {
    const uri = await server.createDatabase('deadline');
    const spoolDir = join(tmp('sp'), 'spool');
    const t = new MLflowTracker(trackerOptions(uri, { spoolDir, artifactUri: join(tmp('a'), 'art') }));
    const runId = await t.startRun({ runName: 'deadline' });
    for (let s = 0; s < 100; s++) t.logMetric('m', s, s);
    await t.flush();
    await server.stop('fast');
    for (let s = 100; s < 350; s++) t.logMetric('m', s, s);
    t.logParams({ late: 'yes' });
    const r = await t.close({ timeoutMs: 1500 });
    expect(r.complete).toBe(false);
    expect(r.undelivered).toEqual({ metrics: 250, params: 1, tags: 0, artifacts: 0, runEnds: 1 });
    expect(r.spoolDir).toBeTruthy();
    expect(r.spoolDir!.startsWith(spoolDir)).toBe(true);
    expect(existsSync(r.spoolDir!)).toBe(true);
    expect(r.message).toMatch(/not delivered 250 metric point\(s\), 1 param\(s\), 1 run end\(s\)/);
    await server.start();
    const t2 = new MLflowTracker(trackerOptions(uri, { spoolDir }));
    await t2.start();
    const f = await t2.flush({ timeoutMs: 30_000 });
    expect(f.complete).toBe(true);
    // flush() of a fresh tracker waits for the adopted spool too
    await expectSteps(uri, runId, 'm', 350);
    const run = await pgRows(uri, 'SELECT status FROM runs WHERE run_uuid = $1', [runId]);
    expect(run[0].status).toBe('FINISHED');
    const params = await pgRows(uri, 'SELECT key, value FROM params WHERE run_uuid = $1', [runId]);
    expect(params).toEqual([{ key: 'late', value: 'yes' }]);
    await t2.close();
    expect(readdirSync(join(spoolDir, readdirSync(spoolDir)[0]!))).toEqual([]);
  });

  it('4 trackers logging concurrently into one (empty) database: no lost or duplicated rows', async () => {
    const uri = await server.createDatabase('concurrent');
    const trackers = Array.from({ length: 4 }, () => new MLflowTracker(trackerOptions(uri, { experimentName: 'concurrent', artifactUri: join(tmp('a'), 'art') })));
    const runIds = await Promise.all(trackers.map((t, i) => t.startRun({ runName: `worker-${i}` })));
    const N = 2500;
    for (let s = 0; s < N; s++) {
      for (const t of trackers) t.logMetrics({ loss: 1 / (s + 1), acc: s / N, lr: 1e-3 }, s);
      if (s % 500 === 0) await sleep(1);
    }
    trackers.forEach((t, i) => t.logParams({ worker: i }));
    const reports = await Promise.all(trackers.map((t) => t.close()));
    for (const r of reports) expect(r.complete, r.message).toBe(true);
    const exps = await pgRows(uri, "SELECT experiment_id FROM experiments WHERE name = 'concurrent'");
    expect(exps.length).toBe(1);
    for (const runId of runIds) {
      const counts = await pgRows(uri, 'SELECT key, COUNT(*) AS n, COUNT(DISTINCT step) AS d FROM metrics WHERE run_uuid = $1 GROUP BY key ORDER BY key', [runId]);
      expect(counts.map((c) => [c.key, Number(c.n), Number(c.d)])).toEqual([['acc', N, N], ['loss', N, N], ['lr', N, N]]);
    }
    const total = await pgRows(uri, 'SELECT COUNT(*) AS n FROM metrics');
    expect(Number(total[0].n)).toBe(4 * 3 * N);
    const statuses = await pgRows(uri, 'SELECT status, COUNT(*) AS n FROM runs GROUP BY status');
    expect(statuses.map((s) => [s.status, Number(s.n)])).toEqual([['FINISHED', 4]]);
  });

  it('secrets in the tracking URI never reach stored values or messages', async () => {
    const secret = 'Sup3r-Secret-Pg-Pw';
    const base = await server.createDatabase('secrets');
    // trust authentication accepts any password: the secret is only there to be leaked (or not)
    const uri = base.replace('postgres@', `postgres:${secret}@`);
    const t = new MLflowTracker(trackerOptions(uri, { artifactUri: join(tmp('a'), 'art'), trackingToken: 'tok-should-not-leak-1' }));
    const runId = await t.startRun({ tags: { conn: uri, note: 'Bearer tok-should-not-leak-1' } });
    t.logParams({ db: uri, db_password: secret, nested: { api_key: 'abc123456', ok: 'fine' } });
    t.setTags({ access_token: 'anything-here' });
    await t.flush();
    const stored = JSON.stringify(await pgRows(uri.replace(`:${secret}`, ''), 'SELECT key, value FROM params UNION ALL SELECT key, value FROM tags'));
    expect(stored).not.toContain(secret);
    expect(stored).not.toContain('tok-should-not-leak-1');
    expect(stored).not.toContain('abc123456');
    expect(stored).toContain('fine');
    expect(stored).toContain(':***@');
    let msg = '';
    const bad = new MLflowTracker(trackerOptions(uri.replace(/:\d+\//, ':1/'), { artifactUri: join(tmp('a'), 'art') }));
    try { await bad.start(); } catch (e) { msg = (e as Error).message + (e as Error).stack; }
    expect(msg).toMatch(/cannot open the tracking store/);
    expect(msg).not.toContain(secret);
    await bad.close();
    await t.close();
    expect(runId).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe('REST faults (private mlflow server)', () => {
  it('server stopped mid-run and restarted: every point arrives, in order, once', async () => {
    const srv = await startMlflowServer();
    try {
      const t = new MLflowTracker(trackerOptions(srv.uri, { httpRequestMaxRetries: 0 }));
      const runId = await t.startRun({ runName: 'rest-restart' });
      for (let s = 0; s < 1500; s++) t.logMetric('loss', 1 / (s + 1), s);
      await t.flush();
      await srv.stop();
      for (let s = 1500; s < 2500; s++) t.logMetric('loss', 1 / (s + 1), s);
      await sleep(700);
      await srv.start();
      for (let s = 2500; s < 3000; s++) t.logMetric('loss', 1 / (s + 1), s);
      const r = await t.close();
      expect(r.complete, r.message).toBe(true);
      const py = await mlflowPython({ op: 'read', tracking_uri: srv.uri, experiment: 'heimdall-localization', history_keys: ['loss'], artifacts: false });
      const run = py.runs.find((x: any) => x.run_id === runId);
      expect(run.status).toBe('FINISHED');
      expect(run.history.loss.map((h: number[]) => h[0])).toEqual(Array.from({ length: 3000 }, (_, i) => i));
    } finally {
      await srv.destroy();
    }
  });
});

describe('process signals and crashes', () => {
  const runChild = (uri: string, mode: string, spoolDir: string) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const p = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/tracking/fixtures/child.ts'), uri, mode, spoolDir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      p.on('exit', (code) => resolve({ code, out, err }));
    });

  it.each([
    ['sigterm', 143, 'KILLED'],
    ['sigint', 130, 'KILLED'],
    ['throw', 1, 'FAILED'],
    ['exit', 0, 'FINISHED'],
  ])('%s → exit code %s, run %s, everything flushed', async (mode, code, status) => {
    const d = tmp(`child-${mode}`);
    const uri = `sqlite:///${join(d, 'm.db')}`;
    const r = await runChild(uri, mode as string, join(d, 'spool'));
    expect(r.code, r.err).toBe(code);
    const runId = /RUN ([0-9a-f]{32})/.exec(r.out)?.[1];
    expect(runId).toBeTruthy();
    const t = new MLflowTracker(trackerOptions(uri));
    const info = await t.getRunInfo(runId!);
    const hist = await t.getMetricHistory('train/loss', runId!);
    await t.close();
    expect(info.status).toBe(status);
    expect(info.endTime).not.toBeNull();
    expect(hist.length).toBe(500);
    expect(info.params.mode).toBe(mode);
    if (mode === 'throw') {
      expect(info.tags['error.message']).toBe('boom: CUDA out of memory (simulated)');
      expect(info.tags['error.type']).toBe('Error');
      expect(r.err).toContain('boom: CUDA out of memory');
    }
  });
});

describe('S3 faults (private S3 server)', () => {
  it('S3 stopped mid-run and restarted: the artifact upload waits in the spool and lands once it is back', async () => {
    const s3 = await startS3();
    const { CreateBucketCommand, HeadObjectCommand, S3Client } = await import('@aws-sdk/client-s3');
    const client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
    try {
      await client.send(new CreateBucketCommand({ Bucket: 'faults' }));
      const d = tmp('s3fault');
      const t = new MLflowTracker(trackerOptions(`sqlite:///${join(d, 'm.db')}`, {
        artifactUri: 's3://faults/runs', s3EndpointUrl: s3.endpoint, awsAccessKeyId: s3.accessKeyId, awsSecretAccessKey: s3.secretAccessKey,
      }));
      const runId = await t.startRun({ runName: 's3-down' });
      await s3.stop();
      writeFileSync(join(d, 'ckpt.bin'), Buffer.alloc(4096, 3));
      t.logArtifact(join(d, 'ckpt.bin'), 'checkpoints');
      for (let s = 0; s < 100; s++) t.logMetric('loss', 1 / (s + 1), s); // metrics queue up behind the upload
      const early = await t.flush({ timeoutMs: 1500 });
      expect(early.complete).toBe(false);
      expect(early.undelivered.artifacts).toBe(1);
      await s3.start();
      if (s3.kind === 'moto') await client.send(new CreateBucketCommand({ Bucket: 'faults' })); // moto keeps no state
      const r = await t.close();
      expect(r.complete, r.message).toBe(true);
      const head = await client.send(new HeadObjectCommand({ Bucket: 'faults', Key: `runs/${runId}/artifacts/checkpoints/ckpt.bin` }));
      expect(head.ContentLength).toBe(4096);
      const t2 = new MLflowTracker(trackerOptions(`sqlite:///${join(d, 'm.db')}`));
      expect((await t2.getMetricHistory('loss', runId)).length).toBe(100);
      expect((await t2.getRunInfo(runId)).status).toBe('FINISHED');
      await t2.close();
    } finally {
      client.destroy();
      await s3.destroy();
    }
  });
});

describe('spool bound and run status', () => {
  it('the spool is bounded: points beyond it are dropped and reported, nothing else is lost', async () => {
    const server = await startPostgres();
    try {
      const uri = await server.createDatabase('bounded');
      const t = new MLflowTracker(trackerOptions(uri, { spoolMaxBytes: 20_000, artifactUri: join(tmp('a'), 'art') }));
      await t.startRun();
      await server.stop('fast');
      for (let s = 0; s < 5000; s++) t.logMetric('m', s, s);
      t.logParams({ kept: 'yes' });
      const r = await t.close({ timeoutMs: 1500 });
      expect(r.complete).toBe(false);
      expect(r.dropped.metrics).toBeGreaterThan(0);
      expect(r.undelivered.metrics + r.dropped.metrics).toBe(5000);
      expect(r.undelivered.params).toBe(1);
      expect(r.undelivered.runEnds).toBe(1);
    } finally {
      await server.destroy();
    }
  });

  it('a run ended FAILED stays FAILED when the tracker is closed (no FAILED-then-FINISHED)', async () => {
    const d = tmp('failed');
    const uri = `sqlite:///${join(d, 'm.db')}`;
    const t = new MLflowTracker(trackerOptions(uri, { artifactUri: join(d, 'a') }));
    const runId = await t.startRun();
    await t.endRun('FAILED');
    const r = await t.close();
    expect(r.runStatus).toBeNull();
    const t2 = new MLflowTracker(trackerOptions(uri));
    expect((await t2.getRunInfo(runId)).status).toBe('FAILED');
    await t2.close();
  });

  it('resumes an existing run by id: RUNNING again, its params guard against changes, FINISHED at close', async () => {
    const d = tmp('resume');
    const uri = `sqlite:///${join(d, 'm.db')}`;
    const t = new MLflowTracker(trackerOptions(uri, { artifactUri: join(d, 'a') }));
    const runId = await t.startRun({ runName: 'resumable' });
    t.logParams({ lr: 0.1 });
    for (let s = 0; s < 10; s++) t.logMetric('loss', s, s);
    await t.endRun('KILLED');
    await t.close();
    const t2 = new MLflowTracker(trackerOptions(uri));
    expect(await t2.startRun({ runId })).toBe(runId);
    expect((await t2.getRunInfo()).status).toBe('RUNNING');
    expect(() => t2.logParams({ lr: 0.2 })).toThrow(/Changing param values is not allowed: 'lr'/);
    for (let s = 10; s < 20; s++) t2.logMetric('loss', s, s);
    await t2.close();
    const t3 = new MLflowTracker(trackerOptions(uri));
    const info = await t3.getRunInfo(runId);
    expect(info.status).toBe('FINISHED');
    expect(info.runName).toBe('resumable');
    expect((await t3.getMetricHistory('loss', runId)).map((m) => m.step)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    await t3.close();
  });
});
