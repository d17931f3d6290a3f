// Dataset inputs (`mlflow.log_input`) and system metrics (`mlflow.enable_system_metrics_logging()`) written by
// the tracker into SQLite, PostgreSQL and the REST server, read back with the pinned Python MLflow:
// `get_run(id).inputs.dataset_inputs` and `get_metric_history` of the `system/…` keys.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { datasetInputs, type DatasetDescription } from '../../lib/data/datasets.js';
import { MLflowTracker, type MLflowTrackerOptions } from '../../lib/tracking/index.js';
import { gpuMetrics, readCpuTimes, readMemory, readNetwork, SystemMetricsMonitor } from '../../lib/tracking/system_metrics.js';
import type { Metric } from '../../lib/tracking/types.js';
import { pgRows } from './helpers/pg.js';
import { mlflow29Python, mlflowPython, runInputsPython } from './helpers/python.js';
import { createPgDatabase, startPostgres } from './helpers/services.js';
import { cleanupTmp, tmp, trackerOptions } from './helpers/scenario.js';

afterAll(cleanupTmp);

interface PyInput { name: string; digest: string; source_type: string; source: string; schema: string | null; profile: string | null; tags: Record<string, string> }
interface PyPoint { step: number; value: number; timestamp: number }
interface PyRun { inputs: PyInput[]; system: Record<string, PyPoint[]>; end_time: number; status: string }
interface PyReply { runs: Record<string, PyRun>; numpy: { schema: string; profile: string }[] }

function readWithPython(req: Record<string, unknown>, python?: string): Promise<PyReply> {
  return runInputsPython<PyReply>(req, python);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A localization data set of `samples` like the synthetic one (7 × 128 × 32 inputs, [lat, lon] targets). */
function heimdallLike(seed: number, sizes: [number, number, number]): ReturnType<typeof datasetInputs> {
  const d: DatasetDescription = {
    name: 'heimdall-synthetic', sourceType: 'code', source: { tags: { 'heimdall.data.source': 'synthetic' } },
    identity: { generator: 'heimdall-synthetic', seed, samples: sizes[0] + sizes[1] + sizes[2] },
    inputShape: [7, 128, 32], targetShape: [2], inputDtype: 'float32', targetDtype: 'float32', targetKind: 'position [lat, lon] (normalised)',
  };
  return datasetInputs(d, [{ split: 'train', size: sizes[0], seed }, { split: 'val', size: sizes[1], seed }, { split: 'test', size: sizes[2], seed }]);
}

// System metrics every 0.1 s, two samples averaged per point: a point every 0.2 s (MLflow's env names).
const FAST_SYSTEM_METRICS = { MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL: '0.1', MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING: '2' };

const backends: { name: string; make: () => Promise<{ uri: string; python: string; extra?: MLflowTrackerOptions; count?: (sql: string) => Promise<number> }> }[] = [
  {
    name: 'sqlite',
    make: async () => {
      const d = tmp('inputs-sqlite');
      const file = join(d, 'mlflow.db');
      const count = async (sql: string) => {
        const db = new Database(file, { readonly: true });
        try { return Number((db.prepare(sql).get() as { n: number }).n); } finally { db.close(); }
      };
      return { uri: `sqlite:///${file}`, python: `sqlite:///${file}`, extra: { artifactUri: join(d, 'artifacts') }, count };
    },
  },
  {
    name: 'postgresql',
    make: async () => {
      const uri = await createPgDatabase(inject('pgUri'), 'inputs');
      const count = async (sql: string) => Number((await pgRows<{ n: string }>(uri, sql))[0]!.n);
      return { uri, python: uri.replace(/^postgresql:\/\//, 'postgresql+psycopg2://'), extra: { artifactUri: join(tmp('inputs-pg'), 'artifacts') }, count };
    },
  },
  { name: 'rest', make: async () => ({ uri: inject('mlflowUri'), python: inject('mlflowUri') }) },
];

describe.each(backends)('$name store: dataset inputs and system metrics', ({ name, make }) => {
  it('logs datasets as mlflow.log_input does (reused by name and digest) and system metrics at steps 0, 1, 2…', async () => {
    const b = await make();
    const experimentName = `inputs-${name}-${process.pid}-${Date.now()}`;
    const t = new MLflowTracker(trackerOptions(b.uri, { ...b.extra, experimentName, env: FAST_SYSTEM_METRICS }));
    const first = heimdallLike(7, [144, 36, 20]);
    let run1: string;
    let run2: string;
    let run3: string;
    try {
      run1 = await t.startRun({ runName: 'with-inputs', logSystemMetrics: true });
      t.logInputs(first);
      t.logInputs(first); // the same inputs again: nothing new (MLflow's dedupe)
      await sleep(1300);
      await t.endRun('FINISHED');
      // A second run on the same data (same digests) reuses the experiment's dataset rows; another seed does not.
      run2 = await t.startRun({ runName: 'same-data' });
      t.logInputs(heimdallLike(7, [144, 36, 20]));
      await t.endRun('FINISHED');
      run3 = await t.startRun({ runName: 'other-seed' });
      t.logInputs(heimdallLike(8, [144, 36, 20]).slice(0, 1));
      const report = await t.endRun('FINISHED');
      expect(report.complete).toBe(true);
      expect(report.errors).toEqual([]);
    } finally {
      await t.close();
    }
    const py = await readWithPython({
      tracking_uri: b.python, run_ids: [run1, run2, run3],
      numpy: [{ features: [144, 7, 128, 32], targets: [144, 2] }],
    });

    // Datasets: names, contexts, and the JSON Python MLflow writes for a NumPy dataset of the same shapes.
    const r1 = py.runs[run1]!;
    expect(r1.inputs.map((i) => [i.name, i.tags['mlflow.data.context']]).sort()).toEqual([
      ['heimdall-synthetic-test', 'testing'], ['heimdall-synthetic-train', 'training'], ['heimdall-synthetic-val', 'validation'],
    ]);
    const train = r1.inputs.find((i) => i.name === 'heimdall-synthetic-train')!;
    expect(train.digest).toMatch(/^[0-9a-f]{8}$/);
    expect(train.source_type).toBe('code');
    expect(JSON.parse(train.source)).toEqual({ tags: { 'heimdall.data.source': 'synthetic' } });
    expect(train.schema).toBe(py.numpy[0]!.schema); // byte for byte what mlflow.data.from_numpy writes
    const ours = JSON.parse(train.profile!);
    const theirs = JSON.parse(py.numpy[0]!.profile);
    expect(Object.fromEntries(Object.keys(theirs).map((k) => [k, ours[k]]))).toEqual(theirs);
    expect(train.profile!.startsWith(py.numpy[0]!.profile.slice(0, -1))).toBe(true); // same keys first, same formatting
    expect(ours).toMatchObject({ num_samples: 144, split: 'train', target_kind: 'position [lat, lon] (normalised)' });
    // Same data → same digests in the second run; another seed → another digest.
    const digests = (r: PyRun) => Object.fromEntries(r.inputs.map((i) => [i.name, i.digest]));
    expect(digests(py.runs[run2]!)).toEqual(digests(r1));
    expect(py.runs[run3]!.inputs[0]!.digest).not.toBe(train.digest);
    if (b.count) {
      // 3 datasets of run 1, reused by run 2, plus the other seed's train split; 7 inputs, each with its context tag.
      expect(await b.count('SELECT COUNT(*) AS n FROM datasets')).toBe(4);
      expect(await b.count("SELECT COUNT(*) AS n FROM inputs WHERE source_type = 'DATASET' AND destination_type = 'RUN' AND step = 0")).toBe(7);
      expect(await b.count("SELECT COUNT(*) AS n FROM input_tags WHERE name = 'mlflow.data.context'")).toBe(7);
    }

    // System metrics: MLflow's names, steps 0, 1, 2… without gaps, values rounded to 0.1, none after the run's end.
    const keys = Object.keys(r1.system);
    for (const k of ['cpu_utilization_percentage', 'system_memory_usage_megabytes', 'system_memory_usage_percentage', 'disk_usage_percentage',
      'disk_usage_megabytes', 'disk_available_megabytes', 'network_receive_megabytes', 'network_transmit_megabytes', 'process_memory_rss_megabytes']) {
      expect(keys).toContain(`system/${k}`);
    }
    const cpu = r1.system['system/cpu_utilization_percentage']!;
    expect(cpu.length).toBeGreaterThanOrEqual(3); // ~6 in 1.3 s at a point per 0.2 s, on a loaded machine fewer
    expect(cpu.map((p) => p.step)).toEqual(cpu.map((_, i) => i));
    for (const [k, points] of Object.entries(r1.system)) {
      for (const p of points) {
        expect(p.timestamp).toBeLessThanOrEqual(r1.end_time);
        if (!k.includes('network_')) expect(Math.abs(p.value * 10 - Math.round(p.value * 10))).toBeLessThan(1e-6);
      }
    }
    for (const p of cpu) {
      expect(p.value).toBeGreaterThanOrEqual(0);
      expect(p.value).toBeLessThanOrEqual(100);
    }
    const memPct = r1.system['system/system_memory_usage_percentage']!;
    expect(memPct.every((p) => p.value > 0 && p.value < 100)).toBe(true);
    const rss = r1.system['system/process_memory_rss_megabytes']!;
    expect(rss.every((p) => p.value > 20 && p.value < 64_000)).toBe(true); // this Node process: tens to hundreds of MB
    // Runs started without logSystemMetrics (MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING unset) have none.
    expect(py.runs[run2]!.system).toEqual({});
  });
});

describe('system metrics monitor', () => {
  it('continues the steps of a resumed run (mlflow resume_logging)', async () => {
    const d = tmp('sysm-resume');
    const uri = `sqlite:///${join(d, 'mlflow.db')}`;
    const t = new MLflowTracker(trackerOptions(uri, { artifactUri: join(d, 'a'), env: FAST_SYSTEM_METRICS }));
    try {
      const runId = await t.startRun({ logSystemMetrics: true });
      await sleep(700);
      await t.endRun('KILLED');
      const before = (await t.getMetricHistory('system/cpu_utilization_percentage', runId)).map((p) => p.step);
      expect(before.length).toBeGreaterThanOrEqual(1);
      await t.startRun({ runId, logSystemMetrics: true });
      await sleep(700);
      await t.endRun('FINISHED');
      const after = (await t.getMetricHistory('system/cpu_utilization_percentage', runId)).map((p) => p.step).sort((a, b) => a - b);
      expect(after.length).toBeGreaterThan(before.length);
      expect(after).toEqual(after.map((_, i) => i)); // one sequence, no step logged twice
    } finally {
      await t.close();
    }
  });

  it('monitorSystemMetrics: another tracker\'s run, under system/<node>/…, its status untouched; refused while the tracker has its own run', async () => {
    const d = tmp('sysm-monitor');
    const uri = `sqlite:///${join(d, 'mlflow.db')}`;
    const owner = new MLflowTracker(trackerOptions(uri, { artifactUri: join(d, 'a') }));
    const other = new MLflowTracker(trackerOptions(uri, { artifactUri: join(d, 'a'), env: FAST_SYSTEM_METRICS }));
    try {
      const runId = await owner.startRun({ logSystemMetrics: false });
      await expect(other.monitorSystemMetrics(runId, { nodeId: 'node/7' })).rejects.toThrow(/nodeId 'node\/7': letters, digits/);
      await other.monitorSystemMetrics(runId, { nodeId: 'node-7' });
      await sleep(700);
      await other.monitorSystemMetrics(null);
      await other.flush();
      const steps = (await other.getMetricHistory('system/node-7/cpu_utilization_percentage', runId)).map((p) => p.step);
      expect(steps.length).toBeGreaterThanOrEqual(1);
      expect(steps).toEqual(steps.map((_, i) => i));
      expect((await owner.getMetricHistory('system/cpu_utilization_percentage', runId))).toEqual([]);  // the owner logs none
      expect((await other.getRun(runId)).info.status).toBe('RUNNING');  // not ended, not resumed by the monitor
      await sleep(500);
      await other.flush();
      expect((await other.getMetricHistory('system/node-7/cpu_utilization_percentage', runId)).length).toBe(steps.length);  // stopped
      await expect(other.startRun({ logSystemMetrics: true, systemMetricsNodeId: 'a:b' })).rejects.toThrow(/startRun: systemMetricsNodeId 'a:b': letters, digits/);
      const own = await other.startRun({ logSystemMetrics: true, systemMetricsNodeId: 'node-3' });  // the run's own monitor, named
      await expect(other.monitorSystemMetrics(runId)).rejects.toThrow(/own run .* is active/);
      await sleep(500);
      await other.endRun();
      expect((await other.getMetricHistory('system/node-3/cpu_utilization_percentage', own)).length).toBeGreaterThanOrEqual(1);
      expect(await other.getMetricHistory('system/cpu_utilization_percentage', own)).toEqual([]);
    } finally {
      await other.close();
      await owner.close();
    }
  });

  it('averages samples, rounds to 0.1 and takes the last network value, as MLflow aggregates', async () => {
    const published: Metric[][] = [];
    const m = new SystemMetricsMonitor('r', { samplingIntervalS: 60, samplesBeforeLogging: 3, startStep: 5, nvml: null }, (_id, ms) => published.push(ms), () => {});
    const samples = [
      { cpu_utilization_percentage: 10, network_receive_megabytes: 1.23456 },
      { cpu_utilization_percentage: 20.04, network_receive_megabytes: 2.5 },
      { cpu_utilization_percentage: 30.2, network_receive_megabytes: 3.75 },
    ];
    let i = 0;
    m.sampleHost = () => ({ ...samples[i++]! });
    for (let k = 0; k < 3; k++) m.tick();
    m.stop();
    expect(published.length).toBe(1);
    const byKey = Object.fromEntries(published[0]!.map((p) => [p.key, p]));
    expect(byKey['system/cpu_utilization_percentage']).toMatchObject({ value: 20.1, step: 5 }); // (10 + 20.04 + 30.2) / 3 = 20.08
    expect(byKey['system/network_receive_megabytes']!.value).toBe(3.75);
  });

  it('reads /proc as psutil does, and computes the GPU rows as MLflow\'s GPUMonitor does from pynvml', () => {
    expect(readCpuTimes('cpu  100 5 50 800 20 3 2 1 0 0\ncpu0 1 2 3 4\n')).toEqual({ busy: 161, total: 981 });
    expect(readMemory('MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\nSReclaimable: 50 kB\n')).toEqual({ total: 1024000, used: 614400 });
    expect(readNetwork('Inter-|   Receive\n face |bytes packets\n    lo: 100 1 0 0 0 0 0 0 40 1 0 0 0 0 0 0\n  eth0: 900 9 0 0 0 0 0 0 60 2 0 0 0 0 0 0\n')).toEqual({ recv: 1000, sent: 100 });
    const MiB = 1048576;
    const g = gpuMetrics([
      { index: 0, utilization: 87, memoryUsed: 40960 * MiB, memoryTotal: 143771 * MiB, power: 612500, powerLimit: 700000 },
      { index: 1, utilization: NaN, memoryUsed: 1024 * MiB, memoryTotal: 143771 * MiB, power: NaN, powerLimit: NaN },
    ]);
    expect(g).toMatchObject({ gpu_0_utilization_percentage: 87, gpu_0_memory_usage_percentage: 28.5, gpu_0_power_usage_watts: 612.5, gpu_0_power_usage_percentage: 87.5 });
    expect(g.gpu_0_memory_usage_megabytes).toBeCloseTo((40960 * MiB) / 1e6, 6);
    expect(Object.keys(g).filter((k) => k.startsWith('gpu_1_')).sort()).toEqual(['gpu_1_memory_usage_megabytes', 'gpu_1_memory_usage_percentage']); // not reported: no row
  });

  it('reads NVIDIA GPUs through NVML, opened at run time by the loader shim (a stand-in libnvidia-ml here: this machine has no GPU)', () => {
    const lib = fakeNvml('nvml-ok');
    const published: Metric[][] = [];
    const warnings: string[] = [];
    const m = new SystemMetricsMonitor('r', { samplingIntervalS: 60, samplesBeforeLogging: 2, startStep: 0, nvml: lib }, (_id, ms) => published.push(ms), (w) => warnings.push(w));
    expect(m.readsGpus).toBe(true);
    m.tick();
    m.tick();
    m.stop();
    expect(warnings).toEqual([]);
    const byKey = Object.fromEntries(published[0]!.map((p) => [p.key, p.value]));
    // GPU 0 reports everything; its utilization was 80 then 90 (the stand-in alternates): averaged as MLflow does.
    expect(byKey).toMatchObject({
      'system/gpu_0_utilization_percentage': 85, 'system/gpu_0_memory_usage_percentage': 28.5,
      'system/gpu_0_power_usage_watts': 612.5, 'system/gpu_0_power_usage_percentage': 87.5,
      'system/gpu_1_memory_usage_percentage': 0.7,
    });
    expect(byKey['system/gpu_0_memory_usage_megabytes']).toBe(Math.round((40960 * 1048576) / 1e6 * 10) / 10);
    // GPU 1's NVML says NVML_ERROR_NOT_SUPPORTED for utilization and power: no rows for them, no error.
    expect(Object.keys(byKey).filter((k) => k.startsWith('system/gpu_1_')).sort()).toEqual(['system/gpu_1_memory_usage_megabytes', 'system/gpu_1_memory_usage_percentage']);
    expect(byKey['system/cpu_utilization_percentage']).toBeTypeOf('number');
  });

  it('logs no GPU rows without an NVIDIA driver (silently), and warns once when NVML is there but does not initialize', () => {
    const published: Metric[][] = [];
    const warnings: string[] = [];
    const none = new SystemMetricsMonitor('r', { samplingIntervalS: 60, samplesBeforeLogging: 1, startStep: 0, nvml: join(tmp('nvml-none'), 'libnvidia-ml.so.1') }, (_id, ms) => published.push(ms), (w) => warnings.push(w));
    expect(none.readsGpus).toBe(false);
    expect(warnings).toEqual([]);
    const lib = fakeNvml('nvml-broken');
    process.env.FAKE_NVML_INIT_RC = '9'; // NVML_ERROR_DRIVER_NOT_LOADED (the stand-in reads it in nvmlInit)
    let broken: SystemMetricsMonitor;
    try {
      broken = new SystemMetricsMonitor('r', { samplingIntervalS: 60, samplesBeforeLogging: 1, startStep: 0, nvml: lib }, (_id, ms) => published.push(ms), (w) => warnings.push(w));
    } finally {
      delete process.env.FAKE_NVML_INIT_RC;
    }
    expect(broken.readsGpus).toBe(false);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('nvmlInit returned 9 (Driver Not Loaded)');
    expect(warnings[0]).toContain('HEIMDALL_NVML_LIBRARY');
    for (const m of [none, broken, none, broken]) m.tick();
    expect(warnings).toHaveLength(1);
    expect(published).toHaveLength(4);
    expect(published.every((ms) => ms.some((p) => p.key === 'system/cpu_utilization_percentage') && !ms.some((p) => p.key.includes('gpu_')))).toBe(true);
    none.stop();
    broken.stop();
  });

  it('the tracker\'s worker thread reads GPUs through HEIMDALL_NVML_LIBRARY; Python MLflow reads the GPU histories', async () => {
    const d = tmp('nvml-tracker');
    const uri = `sqlite:///${join(d, 'mlflow.db')}`;
    const t = new MLflowTracker(trackerOptions(uri, { artifactUri: join(d, 'a'), env: { ...FAST_SYSTEM_METRICS, HEIMDALL_NVML_LIBRARY: fakeNvml('nvml-worker') } }));
    let runId: string;
    try {
      runId = await t.startRun({ logSystemMetrics: true });
      await sleep(700);
      await t.endRun('FINISHED');
    } finally {
      await t.close();
    }
    const reply = await readWithPython({ tracking_uri: uri, run_ids: [runId!] });
    const sys = reply.runs[runId!]!.system;
    expect(sys['system/gpu_0_utilization_percentage']!.length).toBeGreaterThanOrEqual(1);
    expect(sys['system/gpu_0_utilization_percentage']!.every((p) => p.value === 85)).toBe(true);
    expect(sys['system/gpu_0_power_usage_watts']!.map((p) => p.step)).toEqual(sys['system/gpu_0_power_usage_watts']!.map((_, i) => i));
    expect(sys['system/gpu_1_utilization_percentage'] ?? []).toEqual([]);
  });
});

/** Compiles the stand-in libnvidia-ml (fixtures/fake_nvml.c) into a folder of its own. */
function fakeNvml(name: string): string {
  const out = join(tmp(name), 'libnvidia-ml.so.1');
  const cc = spawnSync('cc', ['-shared', '-fPIC', '-O1', '-o', out, join(import.meta.dirname, 'fixtures', 'fake_nvml.c')], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`cc failed: ${cc.stderr}`);
  return out;
}

describe('a database without the dataset tables', () => {
  it('skips dataset inputs with one warning; everything else is stored', async () => {
    const d = tmp('no-datasets');
    const file = join(d, 'mlflow.db');
    const uri = `sqlite:///${file}`;
    const setup = new MLflowTracker(trackerOptions(uri, { artifactUri: join(d, 'a') }));
    await setup.start();
    await setup.close();
    const db = new Database(file);
    db.exec('DROP TABLE input_tags; DROP TABLE inputs; DROP TABLE datasets;');
    db.close();
    const t = new MLflowTracker(trackerOptions(uri, { artifactUri: join(d, 'a') }));
    try {
      const runId = await t.startRun();
      t.logInputs(heimdallLike(1, [10, 3, 1]));
      t.logMetrics({ 'train/loss': 0.5 }, 1);
      t.logInputs(heimdallLike(2, [10, 3, 1]));
      const report = await t.flush();
      expect(report.complete).toBe(true);
      expect(report.errors).toEqual([]);
      expect(t.warnings.filter((w) => w.includes('dataset inputs are not logged'))).toHaveLength(1);
      expect((await t.getRun(runId)).metrics['train/loss']).toBe(0.5);
    } finally {
      await t.close();
    }
  });

  it('refuses bad dataset inputs at the call, naming the field and MLflow\'s limit', async () => {
    const d = tmp('bad-inputs');
    const t = new MLflowTracker(trackerOptions(`sqlite:///${join(d, 'mlflow.db')}`, { artifactUri: join(d, 'a') }));
    try {
      await t.startRun();
      const [good] = heimdallLike(1, [10, 3, 1]);
      expect(() => t.logInputs([{ ...good!, dataset: { ...good!.dataset, digest: 'x'.repeat(37) } }])).toThrow(/digest is 37 characters; MLflow allows at most 36/);
      expect(() => t.logInputs([{ ...good!, tags: [{ key: 'mlflow.data.context', value: 'v'.repeat(501) }] }])).toThrow(/value is 501 characters; MLflow allows at most 500/);
    } finally {
      await t.close();
    }
  });
});

describe('MLflow 2.9 database', () => {
  it('takes dataset inputs and system metrics as it is; the MLflow 2.9 client reads them', async () => {
    const d = tmp('inputs-29');
    const uri = `sqlite:///${join(d, 'mlflow.db')}`;
    const py29 = mlflow29Python();
    const created = await mlflowPython({ op: 'columns', tracking_uri: uri }, {}, py29);
    expect(created.revision).toBe('acf3f17fdcc7');
    const t = new MLflowTracker(trackerOptions(uri, { artifactUri: join(d, 'a'), env: FAST_SYSTEM_METRICS }));
    let runId: string;
    try {
      runId = await t.startRun({ logSystemMetrics: true });
      t.logInputs(heimdallLike(5, [20, 5, 2]));
      await sleep(600);
      const report = await t.endRun('FINISHED');
      expect(report.errors).toEqual([]);
      expect(t.warnings).toEqual([]);
    } finally {
      await t.close();
    }
    const py = await readWithPython({ tracking_uri: uri, run_ids: [runId] }, py29);
    const run = py.runs[runId]!;
    expect(run.inputs.map((i) => i.tags['mlflow.data.context']).sort()).toEqual(['testing', 'training', 'validation']);
    expect(run.system['system/cpu_utilization_percentage']!.length).toBeGreaterThanOrEqual(1);
    expect(await mlflowPython({ op: 'describe', tracking_uri: uri }, {}, py29)).toEqual(created);
  });
});

describe('a database down mid-run (private PostgreSQL cluster)', () => {
  it('spools dataset inputs and system metrics and delivers them, once, when it is back', async () => {
    const server = await startPostgres();
    try {
      const uri = await server.createDatabase('inputs_outage');
      const t = new MLflowTracker(trackerOptions(uri, { artifactUri: join(tmp('outage'), 'a'), env: FAST_SYSTEM_METRICS }));
      const runId = await t.startRun({ logSystemMetrics: true });
      await t.flush();
      await server.stop('fast');
      t.logInputs(heimdallLike(9, [30, 7, 3]));
      await sleep(900); // system metric points keep coming while the database is down
      expect(t.warnings.join('\n')).toMatch(/spooling to/);
      await server.start();
      t.logInputs(heimdallLike(9, [30, 7, 3])); // again after the outage: still one input per dataset
      const r = await t.close();
      expect(r.complete, r.message).toBe(true);
      expect(r.errors).toEqual([]);
      const inputs = await pgRows(uri, "SELECT d.name, t.value FROM inputs i JOIN datasets d ON d.dataset_uuid = i.source_id JOIN input_tags t ON t.input_uuid = i.input_uuid WHERE i.destination_id = $1 ORDER BY d.name", [runId]);
      expect(inputs.map((x) => `${x.name}:${x.value}`)).toEqual(['heimdall-synthetic-test:testing', 'heimdall-synthetic-train:training', 'heimdall-synthetic-val:validation']);
      const steps = (await pgRows(uri, "SELECT step FROM metrics WHERE run_uuid = $1 AND key = 'system/cpu_utilization_percentage' ORDER BY step", [runId])).map((x) => Number(x.step));
      expect(steps.length).toBeGreaterThanOrEqual(3);
      expect(steps).toEqual(steps.map((_, i) => i)); // every point once, none lost in the outage
    } finally {
      await server.destroy();
    }
  });
});
