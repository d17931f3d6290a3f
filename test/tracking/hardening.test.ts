// Hardening (issue 14): faults injected by real means — a spool line torn by hand, a full filesystem (a 64 KiB
// tmpfs), bad items among good ones, secrets in odd places, foreign spools, artifact files changed while
// spooled, credentials and other origins.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { authorizationFor, MLflowTracker } from '../../lib/tracking/index.js';
import { isSecretKey, redact } from '../../lib/config.js';
import { bootId, processStart, Spool, storeKey } from '../../lib/tracking/spool.js';
import { pgRows, sleep } from './helpers/pg.js';
import { cleanupTmp, tmp, trackerOptions } from './helpers/scenario.js';
import { createPgDatabase, startPostgres, startS3 } from './helpers/services.js';

afterAll(cleanupTmp);


/** A tiny tmpfs (a real full disk: ENOSPC) where the test may mount one (root); null elsewhere. */
function smallTmpfs(size = '64k'): { dir: string; unmount(): void } | null {
  const dir = mkdtempSync(join(tmpdir(), 'heimdall-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  return { dir, unmount: () => { try { execFileSync('umount', [dir], { stdio: 'ignore' }); } catch { /* busy */ } rmSync(dir, { recursive: true, force: true }); } };
}
const canMount = (() => { const m = smallTmpfs(); m?.unmount(); return m !== null; })();

/** A SQLite store with one run, ended (KILLED) by a closed tracker: spools can then be crafted for it. */
async function closedRun(prefix: string): Promise<{ d: string; uri: string; spoolDir: string; runId: string }> {
  const d = tmp(prefix);
  const uri = `sqlite:///${join(d, 'm.db')}`;
  const spoolDir = join(d, 'spool');
  const t = new MLflowTracker(trackerOptions(uri, { spoolDir, artifactUri: join(d, 'a') }));
  const runId = await t.startRun({ runName: prefix });
  await t.close({ status: 'KILLED' });
  return { d, uri, spoolDir, runId };
}

/**
 * A tracker on a private PostgreSQL whose spool lies on a full-to-be 64 KiB tmpfs, with a run started and the
 * database stopped; `body` logs, restarts the server (`start`) and checks. Cleans up both.
 */
async function withFullDiskAndDatabaseDown(name: string, body: (x: { t: MLflowTracker; uri: string; runId: string; start: () => Promise<void> }) => Promise<void>): Promise<void> {
  const full = smallTmpfs('64k')!;
  const server = await startPostgres();
  try {
    const uri = await server.createDatabase(name);
    const t = new MLflowTracker(trackerOptions(uri, { spoolDir: full.dir, artifactUri: join(tmp('a'), 'art') }));
    const runId = await t.startRun({ runName: name });
    await server.stop('fast');
    await body({ t, uri, runId, start: () => server.start() });
  } finally {
    await server.destroy();
    full.unmount();
  }
}

const metricLine = (runId: string, step: number) =>
  JSON.stringify({ k: 'log', runId, metrics: [{ key: 'm', value: step / 10, timestamp: 1_700_000_000_000 + step, step }], params: [], tags: [] });

describe('finding 3: a torn spool line, a full disk', () => {
  it('a torn last line of an orphan spool is skipped and reported once; the rest is delivered, later runs work', async () => {
    const { d, uri, spoolDir, runId } = await closedRun('torn');
    // What a SIGKILL mid-append leaves: complete lines, then half a line (no newline).
    const orphan = join(spoolDir, storeKey(uri), 'orphan-1');
    mkdirSync(orphan, { recursive: true });
    writeFileSync(join(orphan, 'owner.json'), JSON.stringify({ pid: 1, since: Date.now(), released: true }));
    const seg1 = join(orphan, 'seg-00000001.jsonl');
    writeFileSync(seg1, Array.from({ length: 10 }, (_, s) => metricLine(runId, s)).join('\n') + '\n' + metricLine(runId, 10).slice(0, 37));
    writeFileSync(join(orphan, 'seg-00000002.jsonl'), Array.from({ length: 10 }, (_, s) => metricLine(runId, 11 + s)).join('\n')
      + '\n{"k":"log","runId":' + '\n' + JSON.stringify({ k: 'end', runId, status: 'FINISHED', endTime: Date.now() }) + '\n');

    const t2 = new MLflowTracker(trackerOptions(uri, { spoolDir, artifactUri: join(d, 'a') }));
    await t2.start();
    const f = await t2.flush({ timeoutMs: 20_000 });
    expect(f.complete, JSON.stringify(f)).toBe(true);
    const warned = t2.warnings.filter((w) => /unreadable line/.test(w));
    expect(warned.length).toBe(2); // once per file
    expect(warned[0]).toContain('seg-00000001.jsonl');
    expect(f.errors.join('\n')).toMatch(/1 unreadable line\(s\)/);
    const hist = await t2.getMetricHistory('m', runId);
    expect(hist.map((h) => h.step)).toEqual([...Array.from({ length: 10 }, (_, s) => s), ...Array.from({ length: 10 }, (_, s) => 11 + s)]);
    expect((await t2.getRunInfo(runId)).status).toBe('FINISHED');
    // the tracker is healthy: a new run starts and is delivered
    const run2 = await t2.startRun({ runName: 'after' });
    t2.logMetric('m', 1, 0);
    const r = await t2.close();
    expect(r.complete, r.message).toBe(true);
    const t3 = new MLflowTracker(trackerOptions(uri, { spoolDir }));
    expect((await t3.getMetricHistory('m', run2)).length).toBe(1);
    await t3.close();
  });

  it.skipIf(!canMount)('a full disk under the spool (ENOSPC) does not kill the worker: operations stay in memory and land when the backend is back', async () => {
    await withFullDiskAndDatabaseDown('enospc', async ({ t, uri, runId, start }) => {
      const N = 4000; // ~300 KB of spool lines: far more than the 64 KiB filesystem
      for (let s = 0; s < N; s++) {
        t.logMetric('m', s, s);
        if (s % 500 === 0) await sleep(20);
      }
      t.logParams({ kept: 'yes' });
      await sleep(1500);
      expect(t.warnings.join('\n')).toMatch(/cannot write the spool .*ENOSPC/);
      const early = await t.flush({ timeoutMs: 500 });
      expect(early.complete).toBe(false);
      expect(early.undelivered.metrics + early.dropped.metrics).toBeGreaterThanOrEqual(N);
      await start();
      const r = await t.close();
      expect(r.complete, JSON.stringify({ ...r, uploaded: undefined })).toBe(true);
      const rows = await pgRows<{ n: string; d: string }>(uri, "SELECT COUNT(*) AS n, COUNT(DISTINCT step) AS d FROM metrics WHERE run_uuid = $1 AND key = 'm'", [runId]);
      expect(Number(rows[0]!.d)).toBe(N);
      expect(Number(rows[0]!.n)).toBe(N);
      const params = await pgRows(uri, 'SELECT key, value FROM params WHERE run_uuid = $1', [runId]);
      expect(params).toEqual([{ key: 'kept', value: 'yes' }]);
    });
  });
});

describe('a full artifact store: one clear error, nothing retried for ever, the run kept', () => {
  // The CI run that filled its disk waited 120 s on an S3 upload: MinIO answered 507 and the tracker took it for
  // a passing outage. A full disk stays full: the upload fails once, naming the store and what to do.
  const bigFile = (d: string, mib: number) => {
    const f = join(d, `big-${mib}.bin`);
    writeFileSync(f, Buffer.alloc(mib << 20, 7));
    return f;
  };

  it.runIf(canMount)('local: ENOSPC — the artifact is refused with the directory named, no partial file, metrics kept', async () => {
    const full = smallTmpfs('2m')!;
    const d = tmp('full-local');
    try {
      const t = new MLflowTracker(trackerOptions(`sqlite:///${join(d, 'm.db')}`, { artifactUri: join(full.dir, 'art') }));
      const runId = await t.startRun({ runName: 'full-local' });
      t.logMetric('loss', 0.5, 0);
      t.logArtifact(bigFile(d, 4));
      t.logMetric('loss', 0.25, 1);
      const small = join(d, 'small.txt');
      writeFileSync(small, 'fits');
      t.logArtifact(small); // a later artifact that fits still lands
      const t0 = Date.now();
      const r = await t.close();
      expect(Date.now() - t0).toBeLessThan(30_000);
      expect(r.errors.length, r.errors.join('\n')).toBe(1);
      expect(r.errors[0]).toMatch(/artifact .*big-4\.bin.*no space left on the device of .*art.*ENOSPC.*Free space there/);
      expect(existsSync(join(full.dir, 'art', runId, 'artifacts', 'big-4.bin'))).toBe(false);
      expect(readFileSync(join(full.dir, 'art', runId, 'artifacts', 'small.txt'), 'utf8')).toBe('fits');
      const check = new MLflowTracker(trackerOptions(`sqlite:///${join(d, 'm.db')}`));
      expect((await check.getMetricHistory('loss', runId)).map((m) => m.value)).toEqual([0.5, 0.25]);
      expect((await check.getRunInfo(runId)).status).toBe('FINISHED');
      await check.close();
    } finally {
      full.unmount();
    }
  });

  // MinIO's answers while it fills up vary: 507 XMinioStorageFull, 500 InternalError, or a multipart upload it lost
  // (NoSuchUpload). The last two are retried; the 507 that follows ends it.
  it.runIf(canMount)('s3 (MinIO on a 32 MiB disk): HTTP 507 is reported once, in seconds, as the server out of storage', async () => {
    const full = smallTmpfs('32m')!;
    const server = await startS3({ dataDir: join(full.dir, 'data') });
    const d = tmp('full-s3');
    try {
      const bucket = `full-${Date.now().toString(36)}`;
      const client = new S3Client({ endpoint: server.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey } });
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      client.destroy();
      const env = { MLFLOW_S3_ENDPOINT_URL: server.endpoint, AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey, MLFLOW_ARTIFACT_URI: `s3://${bucket}/mlflow` };
      const t = new MLflowTracker({ ...trackerOptions(`sqlite:///${join(d, 'm.db')}`), env });
      const runId = await t.startRun({ runName: 'full-s3' });
      t.logMetric('loss', 0.5, 0);
      t.logArtifact(bigFile(d, 40));
      const t0 = Date.now();
      const r = await t.close();
      expect(Date.now() - t0).toBeLessThan(60_000);
      expect(r.errors.length, r.errors.join('\n')).toBe(1);
      expect(r.errors[0], r.errors[0]).toMatch(new RegExp(`artifact .*big-40\\.bin.*s3://${bucket}/mlflow/${runId}/artifacts/big-40\\.bin refused: the S3 server is out of storage \\(HTTP 507 XMinioStorageFull\\)`));
      expect(r.errors[0]).not.toContain(server.secretAccessKey);
      const check = new MLflowTracker(trackerOptions(`sqlite:///${join(d, 'm.db')}`));
      expect((await check.getMetricHistory('loss', runId)).map((m) => m.value)).toEqual([0.5]);
      await check.close();
    } finally {
      await server.destroy();
      full.unmount();
    }
  });
});

describe('finding 3: memory stays bounded while the spool cannot be written', () => {
  it.skipIf(!canMount)('beyond 4096 operations held in memory, their points are dropped and counted; params are kept', async () => {
    await withFullDiskAndDatabaseDown('held', async ({ t, uri, runId, start }) => {
      const N = 6000;
      t.logParams({ first: 1 });
      for (let s = 0; s < N; s++) {
        t.logMetric('m', s, s);
        await new Promise((r) => setImmediate(r)); // one operation per point
      }
      t.logParams({ last: 2 });
      await sleep(500);
      await start();
      const r = await t.close();
      expect(r.complete, r.message).toBe(true);
      expect(r.dropped.metrics).toBeGreaterThan(0);
      expect(r.message).toMatch(/dropped/);
      const rows = await pgRows<{ n: string }>(uri, "SELECT COUNT(*) AS n FROM metrics WHERE run_uuid = $1 AND key = 'm'", [runId]);
      expect(Number(rows[0]!.n) + r.dropped.metrics).toBe(N);
      const params = await pgRows(uri, 'SELECT key, value FROM params WHERE run_uuid = $1 ORDER BY key', [runId]);
      expect(params).toEqual([{ key: 'first', value: '1' }, { key: 'last', value: '2' }]);
    });
  });
});

describe('finding 5: one bad item never costs the batch', () => {
  const stores: [string, () => Promise<string>][] = [
    ['postgresql', () => createPgDatabase(inject('pgUri'), 'badItem')],
    ['rest', async () => inject('mlflowUri')],
  ];

  it.each(stores)('%s: bad points are refused at the call, a fractional timestamp is truncated, the rest of the batch lands', async (_kind, makeUri) => {
    const uri = await makeUri();
    const t = new MLflowTracker(trackerOptions(uri, { experimentName: `bad-item-${Date.now()}`, artifactUri: join(tmp('a'), 'art') }));
    const runId = await t.startRun({ runName: 'bad-item' });
    for (let s = 0; s < 100; s++) {
      if (s === 50) t.logMetric('m', s, s, 1_700_000_000_000.75); // performance.now()-style: truncated like Python's int()
      else t.logMetric('m', s, s, 1_700_000_000_000 + s);
    }
    t.logMetric('special', NaN, 0, 1_700_000_000_000); // NaN is a legal metric value
    expect(() => t.logMetric('m', 1, 1, -5)).toThrow(/Invalid timestamp -5 for metric 'm'/);
    expect(() => t.logMetric('m', 1, 1, NaN)).toThrow(/Invalid timestamp NaN/);
    expect(() => t.logMetric('m', 1, 1.5)).toThrow(/step must be an integer/);
    expect(() => t.logMetrics({ ok: 1, m: 2 }, 3, Infinity)).toThrow(/Invalid timestamp Infinity/);
    expect(() => t.logMetric('m', '1' as unknown as number, 1)).toThrow(/value must be a number/);
    const r = await t.flush();
    expect(r.complete, JSON.stringify(r)).toBe(true);
    expect(r.errors).toEqual([]);
    const hist = await t.getMetricHistory('m', runId);
    expect(hist.map((h) => h.step)).toEqual(Array.from({ length: 100 }, (_, s) => s));
    expect(hist[50]!.timestamp).toBe(1_700_000_000_000);
    expect(Number.isNaN((await t.getMetricHistory('special', runId))[0]!.value)).toBe(true);
    expect((await t.getMetricHistory('ok', runId)).length).toBe(0);
    await t.close();
  });

  it.each(stores)('%s: a param changed behind the tracker\'s back is refused alone; same value again is no error', async (_kind, makeUri) => {
    const uri = await makeUri();
    const experimentName = `param-conflict-${Date.now()}`;
    const t1 = new MLflowTracker(trackerOptions(uri, { experimentName, artifactUri: join(tmp('a'), 'art') }));
    const runId = await t1.startRun({ runName: 'resumed-twice' });
    await t1.close({ status: 'KILLED' });
    // Two trackers resume the run (as after a crash with lr=0.1 still in the spool): neither knows the other's params.
    const a = new MLflowTracker(trackerOptions(uri, { experimentName }));
    const b = new MLflowTracker(trackerOptions(uri, { experimentName }));
    await a.startRun({ runId });
    await b.startRun({ runId });
    a.logParams({ lr: 0.1, epochs: 10 });
    expect((await a.flush()).complete).toBe(true);
    // one batch: a conflicting param, an identical param, a new param, 500 points, a tag
    b.logParams({ lr: 0.2, epochs: 10, batch: 32 });
    for (let s = 0; s < 500; s++) b.logMetric('loss', 1 / (s + 1), s, 1_700_000_000_000 + s);
    b.setTag('note', 'kept');
    const r = await b.flush();
    expect(r.errors.length, r.errors.join('\n')).toBe(1);
    expect(r.errors[0]).toMatch(/^param 'lr' of run [0-9a-f]{32} refused: .*Changing param values is not allowed/);
    const info = await b.getRunInfo(runId);
    expect(info.params).toEqual({ lr: '0.1', epochs: '10', batch: '32' });
    expect(info.tags.note).toBe('kept');
    expect((await b.getMetricHistory('loss', runId)).length).toBe(500);
    await a.close();
    await b.close();
  });
});

describe('finding 9: redaction gaps', () => {
  it('a password after an empty user name is redacted', () => {
    const text = 'GET https://:tok-Abc123xyz@mlflow.example/api failed; db postgresql://:pw-Abc123xyz@h:5432/db down';
    const r = redact(text);
    expect(r).not.toContain('tok-Abc123xyz');
    expect(r).not.toContain('pw-Abc123xyz');
    expect(r).toContain('https://:***@mlflow.example/api');
    expect(r).toContain('postgresql://:***@h:5432/db');
  });

  it('secret_key, private_key, secretKey, privateKey are secret names; key, max_tokens, keys are not', () => {
    for (const k of ['secret_key', 'private_key', 'secretKey', 'privateKey', 'aws/secret_key', 'ssh.private-key', 'SECRET_KEY', 'gcpPrivateKey']) expect(isSecretKey(k), k).toBe(true);
    for (const k of ['key', 'max_tokens', 'keys', 'primary_key_column', 'secretary']) expect(isSecretKey(k), k).toBe(false);
  });

  it('a ?password= in the tracking URI never reaches the spool folder name (and the same store keeps one key)', () => {
    const a = 'postgresql://u@db.example:5432/mlflow?password=Hunter2-Secret-9&sslmode=require';
    const b = 'postgresql://u:Other-Pw-77@db.example:5432/mlflow?password=Another-Secret-3&sslmode=require';
    expect(storeKey(a)).not.toMatch(/Hunter2|Secret/);
    expect(storeKey('postgresql://h/db?password=Hunter2x')).not.toContain('Hunter2x');
    expect(storeKey(a)).toBe(storeKey(b));
    expect(storeKey(a)).not.toBe(storeKey('postgresql://u@db.example:5432/mlflow?sslmode=disable'));
    const sp = new Spool(tmp('key'), a, 1e6);
    expect(sp.dir).not.toContain('Hunter2');
    expect(storeKey('https://:tok-Abc123xyz@mlflow.example')).not.toContain('tok');
  });

  it('params named secret_key / private_key / secretKey are stored as ***', async () => {
    const d = tmp('redact');
    const uri = `sqlite:///${join(d, 'm.db')}`;
    const t = new MLflowTracker(trackerOptions(uri, { artifactUri: join(d, 'a') }));
    const runId = await t.startRun();
    t.logParams({ secret_key: 'v-Abc123xyz-1', private_key: 'v-Abc123xyz-2', secretKey: 'v-Abc123xyz-3', ssh: { privateKey: 'v-Abc123xyz-4' }, lr: 0.1 });
    t.setTags({ django_secret_key: 'v-Abc123xyz-5', endpoint: 'https://:v-Abc123xyz-6@host/x' });
    await t.flush();
    const info = await t.getRunInfo(runId);
    await t.close();
    expect(JSON.stringify(info)).not.toMatch(/v-Abc123xyz/);
    expect(info.params).toMatchObject({ secret_key: '***', private_key: '***', secretKey: '***', 'ssh/privateKey': '***', lr: '0.1' });
    expect(info.tags.endpoint).toBe('https://:***@host/x');
  });
});

describe('finding 13: drops survive recovery; a late upload never sends a changed file', () => {
  it('points dropped at the spool bound are still reported after the backend is back; a file changed while its upload was spooled is refused', async () => {
    const server = await startPostgres();
    try {
      const uri = await server.createDatabase('late');
      const art = join(tmp('a'), 'art');
      const d = tmp('files');
      const t = new MLflowTracker(trackerOptions(uri, { spoolMaxBytes: 20_000, artifactUri: art }));
      const runId = await t.startRun({ runName: 'late' });
      const runArt = t.artifactUri!;
      await server.stop('fast');
      for (let s = 0; s < 5000; s++) t.logMetric('m', s, s);
      t.logParams({ kept: 'yes' }); // never dropped: waits in the spool, and the uploads wait behind it
      writeFileSync(join(d, 'best.ckpt'), 'epoch 1 weights');
      writeFileSync(join(d, 'config.yaml'), 'lr: 0.1');
      t.logArtifact(join(d, 'best.ckpt'), 'checkpoints');
      t.logArtifact(join(d, 'config.yaml'));
      await sleep(1000); // the worker takes the uploads (and fixes their content) while the database is down
      writeFileSync(join(d, 'best.ckpt'), 'epoch 7 weights: not what was logged');
      const down = await t.flush({ timeoutMs: 500 });
      expect(down.complete, JSON.stringify({ ...down, errors: down.errors.slice(0, 3) })).toBe(false);
      expect(down.dropped.metrics).toBeGreaterThan(0);
      await server.start();
      const r = await t.close();
      expect(r.complete, r.message).toBe(true);
      expect(r.dropped.metrics).toBe(down.dropped.metrics);
      expect(r.message).toMatch(new RegExp(`^tracking data delivered, except what was dropped; ${r.dropped.metrics} metric point\\(s\\) dropped at the spool bound`));
      expect(r.message).not.toMatch(/all tracking data delivered/);
      const rows = await pgRows<{ n: string }>(uri, "SELECT COUNT(*) AS n FROM metrics WHERE run_uuid = $1 AND key = 'm'", [runId]);
      expect(Number(rows[0]!.n) + r.dropped.metrics).toBe(5000);
      expect(r.errors.join('\n')).toMatch(/best\.ckpt'.*changed \(or removed\) since logArtifact\(\)/);
      expect(r.uploaded.map((u) => u.path)).toEqual(['config.yaml']);
      expect(existsSync(join(runArt, 'checkpoints', 'best.ckpt'))).toBe(false);
      expect(readFileSync(join(runArt, 'config.yaml'), 'utf8')).toBe('lr: 0.1');
    } finally {
      await server.destroy();
    }
  });
});


describe('finding 11: orphan spools by host, boot and process start time', () => {
  it.skipIf(bootId() === null)('adopts only spools whose owner is provably gone on this host; leaves a foreign host\'s and a live one alone', async () => {
    const { uri, spoolDir, runId } = await closedRun('orphans');
    const me = { host: hostname(), boot: bootId(), pid: process.pid, start: processStart(process.pid), since: Date.now() };
    // This very process stands in for "a live pid": alive, on this host and boot.
    const owners: Record<string, object> = {
      'a-earlier-boot': { ...me, boot: '00000000-0000-0000-0000-000000000000' }, // pid alive now, but from before a reboot
      'b-reused-pid': { ...me, start: '1' }, // the pid is alive but is another process now
      'c-live': me, // really alive: left alone
      'd-foreign-live': { ...me, host: 'another-host' }, // another host (shared storage, containers): left alone
      'e-foreign-dead': { ...me, host: 'another-host', pid: 2_000_000_000 }, // a dead-looking pid of another host: left alone
    };
    const root = join(spoolDir, storeKey(uri));
    Object.entries(owners).forEach(([name, owner], i) => {
      mkdirSync(join(root, name), { recursive: true });
      writeFileSync(join(root, name, 'owner.json'), JSON.stringify(owner));
      writeFileSync(join(root, name, 'seg-00000001.jsonl'), metricLine(runId, i) + '\n');
    });
    const t2 = new MLflowTracker(trackerOptions(uri, { spoolDir }));
    await t2.start();
    const f = await t2.flush({ timeoutMs: 20_000 });
    expect(f.complete).toBe(true);
    expect(f.errors).toEqual([]);
    expect((await t2.getMetricHistory('m', runId)).map((h) => h.step)).toEqual([0, 1]);
    expect(existsSync(join(root, 'c-live', 'seg-00000001.jsonl'))).toBe(true);
    expect(existsSync(join(root, 'd-foreign-live', 'seg-00000001.jsonl'))).toBe(true);
    expect(existsSync(join(root, 'e-foreign-dead', 'seg-00000001.jsonl'))).toBe(true);
    const foreign = t2.warnings.filter((w) => /belongs to a tracker on host 'another-host'/.test(w));
    expect(foreign.length).toBe(2);
    await t2.close();
  });

  it('the owner file records host, boot and process start time', () => {
    const sp = new Spool(tmp('own'), 'sqlite:///x.db', 1e6);
    sp.append([{ k: 'end', runId: 'r', status: 'FINISHED', endTime: 1 }]);
    const owner = JSON.parse(readFileSync(join(sp.dir, 'owner.json'), 'utf8'));
    expect(owner).toMatchObject({ pid: process.pid, host: hostname(), boot: bootId(), start: processStart(process.pid) });
  });
});

describe('finding 8: tracking credentials go to the tracking server\'s origin only', () => {
  it('authorizationFor: the token for the same scheme, host and port; nothing for any other origin', () => {
    const cfg = { trackingUri: 'https://mlflow.example', trackingToken: 'tok-Abc123xyz', trackingUsername: undefined, trackingPassword: undefined };
    expect(authorizationFor('https://mlflow.example:443/api/2.0/mlflow-artifacts/artifacts/x', cfg)).toEqual({ Authorization: 'Bearer tok-Abc123xyz' });
    expect(authorizationFor('https://MLFLOW.example/x', cfg)).toEqual({ Authorization: 'Bearer tok-Abc123xyz' });
    for (const other of ['https://evil.example/x', 'http://mlflow.example/x', 'https://mlflow.example:8443/x', 'https://mlflow.example.evil.example/x', 'not a url']) {
      expect(authorizationFor(other, cfg), other).toEqual({});
    }
    const basic = { trackingUri: 'http://127.0.0.1:5000/', trackingToken: undefined, trackingUsername: 'alice', trackingPassword: 'pw-Abc123xyz' };
    expect(authorizationFor('http://127.0.0.1:5000/api', basic).Authorization).toMatch(/^Basic /);
    expect(authorizationFor('http://127.0.0.1:5001/api', basic)).toEqual({});
  });

  it('an experiment whose artifact location names another server gets the upload without the token (shared SQL store)', async () => {
    const seen: { url: string; auth: string | undefined }[] = [];
    const other = http.createServer((req, res) => {
      seen.push({ url: req.url ?? '', auth: req.headers.authorization });
      req.resume();
      req.on('end', () => { res.writeHead(200, { 'Content-Type': 'application/json' }); res.end('{}'); });
    });
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    try {
      const port = (other.address() as { port: number }).port;
      // A shared database (any of its users can set an experiment's artifact_location) with the token configured
      // for the environment. (The pinned MLflow server refuses such a location itself unless
      // MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES allows it; a shared SQL store has no such check.)
      const uri = `sqlite:///${join(tmp('elsewhere'), 'm.db')}`;
      const t = new MLflowTracker(trackerOptions(uri, { trackingToken: 'tok-Must-Not-Leave-42' }));
      const experimentId = await t.getOrCreateExperiment(`elsewhere-${Date.now()}`, { artifactLocation: `mlflow-artifacts://127.0.0.1:${port}/loot` });
      await t.startRun({ experimentId });
      expect(t.artifactUri).toMatch(new RegExp(`^mlflow-artifacts://127\\.0\\.0\\.1:${port}/loot/`));
      const f = join(tmp('up'), 'weights.bin');
      writeFileSync(f, 'weights');
      t.logArtifact(f);
      const r = await t.close();
      expect(r.complete, r.message).toBe(true);
      expect(seen.length).toBe(1);
      expect(seen[0]!.url).toMatch(/^\/api\/2\.0\/mlflow-artifacts\/artifacts\/loot\/.*weights\.bin$/);
      expect(seen[0]!.auth).toBeUndefined();
    } finally {
      await new Promise<void>((r) => other.close(() => r()));
    }
  });
});
