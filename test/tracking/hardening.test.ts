// Hardening (issue 14): faults injected by real means — a spool line torn by hand, a full filesystem (a 64 KiB
// tmpfs), bad items among good ones, secrets in odd places, foreign spools, artifact files changed while
// spooled, credentials and other origins.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { MLflowTracker } from '../../lib/tracking/index.js';
import { storeKey } from '../../lib/tracking/spool.js';
import { cleanupTmp, tmp, trackerOptions } from './helpers/scenario.js';
import { startPostgres } from './helpers/services.js';

afterAll(cleanupTmp);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function pgRows<T = any>(uri: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: uri });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

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

const metricLine = (runId: string, step: number) =>
  JSON.stringify({ k: 'log', runId, metrics: [{ key: 'm', value: step / 10, timestamp: 1_700_000_000_000 + step, step }], params: [], tags: [] });

describe('finding 3: a torn spool line, a full disk', () => {
  it('a torn last line of an orphan spool is skipped and reported once; the rest is delivered, later runs work', async () => {
    const d = tmp('torn');
    const uri = `sqlite:///${join(d, 'm.db')}`;
    const spoolDir = join(d, 'spool');
    const t = new MLflowTracker(trackerOptions(uri, { spoolDir, artifactUri: join(d, 'a') }));
    const runId = await t.startRun({ runName: 'torn' });
    await t.close({ status: 'KILLED' });
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
    const full = smallTmpfs('64k')!;
    const server = await startPostgres();
    try {
      const uri = await server.createDatabase('enospc');
      const t = new MLflowTracker(trackerOptions(uri, { spoolDir: full.dir, artifactUri: join(tmp('a'), 'art') }));
      const runId = await t.startRun({ runName: 'enospc' });
      await server.stop('fast');
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
      await server.start();
      const r = await t.close();
      expect(r.complete, JSON.stringify({ ...r, uploaded: undefined })).toBe(true);
      const rows = await pgRows<{ n: string; d: string }>(uri, "SELECT COUNT(*) AS n, COUNT(DISTINCT step) AS d FROM metrics WHERE run_uuid = $1 AND key = 'm'", [runId]);
      expect(Number(rows[0]!.d)).toBe(N);
      expect(Number(rows[0]!.n)).toBe(N);
      const params = await pgRows(uri, 'SELECT key, value FROM params WHERE run_uuid = $1', [runId]);
      expect(params).toEqual([{ key: 'kept', value: 'yes' }]);
    } finally {
      await server.destroy();
      full.unmount();
    }
  });
});
