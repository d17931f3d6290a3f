// Tracker benchmark: enqueue cost on the caller's thread, sustained points/s into SQLite, PostgreSQL and REST,
// and the pinned Python MLflow client logging the same points into the same stores (per point, log_batch,
// async), with the ratios. Starts its own PostgreSQL cluster and mlflow server (test helpers).
//   npx tsx benchmarks/tracking/throughput.ts [--quick]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MLflowTracker } from '../../lib/tracking/index.js';
import { ROOT, startMlflowServer, startPostgres, VENV } from '../../test/tracking/helpers/services.js';

const quick = process.argv.includes('--quick');
const KEYS = ['train/loss', 'train/mae', 'val/loss', 'lr'];
const dir = mkdtempSync(join(tmpdir(), 'heimdall-bench-'));

function tracker(uri: string): MLflowTracker {
  return new MLflowTracker({
    trackingUri: uri, dotenvPath: false, env: {}, handleSignals: false, experimentName: 'bench-heimdall',
    spoolDir: join(dir, 'spool'), artifactUri: join(dir, 'artifacts'), closeTimeoutS: 600,
  });
}

/** ns per point of logMetrics (4 keys) and logMetric on the caller's thread, median of 5 rounds. */
async function enqueueCost(): Promise<{ logMetrics: number; logMetric: number }> {
  const t = tracker(`sqlite:///${join(dir, 'enqueue.db')}`);
  await t.startRun({ runName: 'enqueue' });
  const rounds = (fn: () => void, points: number) => {
    const out: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t0 = process.hrtime.bigint();
      fn();
      out.push(Number(process.hrtime.bigint() - t0) / points);
    }
    return out.sort((a, b) => a - b)[2]!;
  };
  const n = 50_000;
  let step = 0;
  const m = { 'train/loss': 0.5, 'train/mae': 0.1, 'val/loss': 0.6, lr: 1e-3 };
  const logMetrics = rounds(() => { for (let i = 0; i < n; i++) t.logMetrics(m, step++); }, 4 * n);
  const logMetric = rounds(() => { for (let i = 0; i < 4 * n; i++) t.logMetric(KEYS[i & 3]!, i, step++); }, 4 * n);
  await t.close();
  return { logMetrics, logMetric };
}

/** points/s from the first log call until flush() says everything is stored. */
async function sustained(uri: string, points: number): Promise<number> {
  const t = tracker(uri);
  await t.startRun({ runName: `sustained-${points}` });
  await t.flush();
  const t0 = performance.now();
  const m: Record<string, number> = {};
  for (let s = 0; s < points / 4; s++) {
    for (let k = 0; k < 4; k++) m[KEYS[k]!] = 1 / (s + k + 1);
    t.logMetrics(m, s);
    if ((s & 1023) === 0) await new Promise((r) => setImmediate(r)); // a training loop yields now and then
  }
  const r = await t.flush();
  const dt = (performance.now() - t0) / 1000;
  if (!r.complete) throw new Error(`benchmark flush incomplete: ${JSON.stringify(r.undelivered)}`);
  await t.close();
  return points / dt;
}

/** Python's points/s; on a time-out (limitS), the bound points/limitS, which overstates its rate. */
function python(uri: string, mode: string, points: number, limitS = 240): number {
  const p = spawnSync(join(VENV, 'python'), [join(ROOT, 'benchmarks/tracking/python_client.py'), uri, mode, String(points)], {
    encoding: 'utf8', env: { ...process.env, MLFLOW_TRACKING_URI: '' }, timeout: limitS * 1000, killSignal: 'SIGKILL',
  });
  if (p.error && (p.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') {
    console.log(`  (python ${mode} did not finish ${points} points in ${limitS} s: counted as ${points}/${limitS} s, an upper bound)`);
    return points / limitS;
  }
  if (p.status !== 0) throw new Error(`python ${mode} failed: ${p.stderr.slice(-2000)}`);
  const r = JSON.parse(p.stdout.trim().split('\n').pop()!) as { points: number; seconds: number };
  return r.points / r.seconds;
}

const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1));

async function main(): Promise<void> {
  console.log(`heimdall-torch tracker benchmark (${quick ? 'quick' : 'full'}); node ${process.version}; ${new Date().toISOString()}`);
  const enq = await enqueueCost();
  console.log(`enqueue cost on the caller's thread: logMetrics ${enq.logMetrics.toFixed(0)} ns/point, logMetric ${enq.logMetric.toFixed(0)} ns/point (target ≤ 2000 ns)`);
  const [pg, srv] = await Promise.all([startPostgres(), startMlflowServer()]);
  try {
    const pgUri = await pg.createDatabase('bench');
    const stores = [
      { name: 'SQLite', uri: `sqlite:///${join(dir, 'bench.db')}`, py: `sqlite:///${join(dir, 'bench.db')}`, points: quick ? 50_000 : 400_000, target: 50_000 },
      { name: 'PostgreSQL', uri: pgUri, py: pgUri.replace('postgresql://', 'postgresql+psycopg2://'), points: quick ? 40_000 : 200_000, target: 20_000 },
      { name: 'REST', uri: srv.uri, py: srv.uri, points: quick ? 20_000 : 100_000, target: 0 },
    ];
    const rows: string[][] = [];
    for (const s of stores) {
      const ours = await sustained(s.uri, s.points);
      const per = python(s.py, 'per-point', quick ? 400 : 2000);
      const batch = python(s.py, 'batch', quick ? 20_000 : 100_000);
      const asy = python(s.py, 'async', quick ? 2000 : s.name === 'REST' ? 4000 : 10_000);
      console.log(`  ${s.name}: heimdall ${fmt(ours)} pts/s; python log_metric ${fmt(per)}, log_batch ${fmt(batch)}, async ${fmt(asy)} pts/s`);
      rows.push([
        s.name, fmt(ours), s.target ? `${fmt(s.target)}${ours >= s.target ? ' ✓' : ' ✗'}` : '-',
        fmt(per), fmt(batch), fmt(asy), `${fmt(ours / per)}×`, `${fmt(ours / batch)}×`, `${fmt(ours / asy)}×`,
      ]);
    }
    const head = ['store', 'heimdall pts/s', 'target', 'py log_metric', 'py log_batch', 'py async', 'vs per-point', 'vs log_batch', 'vs async'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
    console.log(line(head));
    console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
    for (const r of rows) console.log(line(r));
  } finally {
    await Promise.allSettled([pg.destroy(), srv.destroy()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
