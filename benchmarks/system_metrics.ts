// The cost of system metrics (lib/tracking/system_metrics.ts) on training throughput: the same `trainer.fit()`
// with an MLflowLogger (SQLite in a temporary folder, batch metrics every step), `logSystemMetrics: true` against
// `false`, in one process, the order alternating per rep; the ratio is the median of the per-rep ratios
// (training samples/s with ÷ without; target ≥ 0.99, i.e. ≤ 1 % cost).
//
//   npx tsx benchmarks/system_metrics.ts                       # MLflow's default interval (10 s), ~4 min
//   npx tsx benchmarks/system_metrics.ts --interval 1          # ten times MLflow's sampling rate: an upper bound
//
// Flags: --interval S (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL, default 10)  --seconds S (per fit, default 25)
//        --epochs N (per fit, instead of --seconds)  --reps N (4)  --variant atto  --batch 32
//        --sample-only (only the direct cost of one sample; with HEIMDALL_NVML_LIBRARY=<a libnvidia-ml> it includes
//        NVML: the driver's own, or the test's stand-in, test/tracking/fixtures/fake_nvml.c, for the binding alone)  --help
// Nothing else is set: the engine's threads, the environment and the machine's load are as a user has them.
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

function parseArgs(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help') {
      console.log('npx tsx benchmarks/system_metrics.ts [--interval S] [--seconds S] [--reps N] [--variant atto] [--batch 32]');
      process.exit(0);
    }
    if (a === '--sample-only') out.set('sample-only', '');
    else if (a.startsWith('--')) out.set(a.slice(2), argv[++i] ?? '');
  }
  return out;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const interval = Number(args.get('interval') ?? 10);
  const seconds = Number(args.get('seconds') ?? 25);
  const reps = Number(args.get('reps') ?? 4);
  const variant = args.get('variant') ?? 'atto';
  const batch = Number(args.get('batch') ?? 32);
  process.env.MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL = String(interval);
  const { Trainer, ConvNeXt, TensorDataModule, MLflowLogger, torchInfo } = await import('../lib/index.js');

  // Random inputs (3×128×32, the Heimdall feature shape) and regression targets, as train_throughput.ts uses.
  const steps = 22;
  const n = batch * steps;
  const inputs = new Float32Array(n * 3 * 128 * 32);
  const targets = new Float32Array(n * 2);
  let s = 0x9e3779b9;
  const rnd = () => { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; return (s >>> 0) / 4294967296; };
  for (let i = 0; i < inputs.length; i++) inputs[i] = rnd();
  for (let i = 0; i < targets.length; i++) targets[i] = rnd() * 2 - 1;
  const data = () => new TensorDataModule(inputs, [n, 3, 128, 32], targets, [n, 2], { batchSize: batch, split: false });

  /** One fit of about `secs` seconds; returns training samples/s and the system metric points logged. */
  async function fit(withSystemMetrics: boolean, epochs: number): Promise<{ samplesPerSec: number; points: number; seconds: number; lastEpochSeconds: number }> {
    const root = mkdtempSync(join(tmpdir(), 'heimdall-sysm-bench-'));
    try {
      const logger = new MLflowLogger({ trackerOptions: { trackingUri: `sqlite:///${join(root, 'mlflow.db')}`, artifactUri: join(root, 'artifacts'), experimentName: 'sysm-bench', dotenvPath: false } });
      const trainer = new Trainer({
        maxEpochs: epochs, optimizer: { name: 'adamw', lr: 1e-3 }, schedule: { name: 'constant' }, defaultRootDir: root,
        enableProgressBar: false, enableModelSummary: false, handleSignals: false, logger, logSystemMetrics: withSystemMetrics,
      });
      const history = await trainer.fit(ConvNeXt.regression(`convnext_${variant}`, 2, { seed: 42 }), data());
      const secs = history.epochs.reduce((a, e) => a + e.seconds, 0);
      const samples = history.epochs.reduce((a, e) => a + e.samplesPerSec * e.seconds, 0);
      const points = (await logger.tracker.getMetricHistory('system/cpu_utilization_percentage', logger.runId!)).length;
      await logger.close();
      return { samplesPerSec: samples / secs, points, seconds: secs, lastEpochSeconds: history.epochs[history.epochs.length - 1]!.seconds };
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }

  const info = torchInfo();
  console.log(`system metrics cost: convnext_${variant} 3×128×32 b${batch}, ${steps} steps/epoch, SQLite MLflowLogger; ` +
    `MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL=${interval} s; libtorch ${info.libtorch}, ${info.threads} threads, ${cpus().length} CPUs, load ${loadavg()[0]!.toFixed(1)}`);
  // What one sample costs the worker thread, measured directly (independent of the machine's load on training).
  const { SystemMetricsMonitor } = await import('../lib/tracking/system_metrics.js');
  const probe = new SystemMetricsMonitor('probe', { samplingIntervalS: interval, samplesBeforeLogging: 1, startStep: 0, nvml: process.env.HEIMDALL_NVML_LIBRARY || 'libnvidia-ml.so.1' }, () => {}, () => {});
  const gpu = probe.readsGpus;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const k = 200;
  for (let i = 0; i < k; i++) probe.tick();
  const wallMs = (performance.now() - t0) / k;
  const cpuUs = process.cpuUsage(cpu0);
  const cpuMs = (cpuUs.user + cpuUs.system) / 1000 / k;
  probe.stop();
  console.log(`one sample (/proc, statfs${gpu ? ', NVML' : ''}): ${wallMs.toFixed(3)} ms wall, ${cpuMs.toFixed(3)} ms CPU (this process) → ` +
    `${((cpuMs / (interval * 1000)) * 100).toFixed(4)} % of one core at one sample per ${interval} s${gpu ? '' : '; no NVIDIA driver (no GPU rows)'}`);
  if (args.has('sample-only')) return;
  // Warm-up (and the epoch length that gives ~`seconds` per fit: the second epoch, past the first's set-up).
  const warm = await fit(false, args.has('epochs') ? 1 : 2);
  const epochs = args.has('epochs') ? Number(args.get('epochs')) : Math.max(2, Math.round(seconds / warm.lastEpochSeconds));
  console.log(`warm-up: ${warm.samplesPerSec.toFixed(1)} samples/s; ${epochs} epochs per fit (~${(epochs * warm.lastEpochSeconds).toFixed(0)} s), ${reps} reps`);
  const ratios: number[] = [];
  const on: number[] = [];
  const off: number[] = [];
  let points = 0;
  for (let r = 0; r < reps; r++) {
    const order = r % 2 === 0 ? [true, false] : [false, true];
    const got: Record<string, number> = {};
    for (const withSm of order) {
      const f = await fit(withSm, epochs);
      got[String(withSm)] = f.samplesPerSec;
      (withSm ? on : off).push(f.samplesPerSec);
      if (withSm) points += f.points;
      console.log(`  rep ${r + 1} ${withSm ? 'with   ' : 'without'} system metrics: ${f.samplesPerSec.toFixed(1)} samples/s over ${f.seconds.toFixed(1)} s${withSm ? `, ${f.points} point(s) per metric` : ''}`);
    }
    ratios.push(got.true! / got.false!);
  }
  const ratio = median(ratios);
  console.log('');
  console.log('| system metrics | training samples/s (median) |');
  console.log('|---|---:|');
  console.log(`| off (logSystemMetrics: false) | ${median(off).toFixed(1)} |`);
  console.log(`| on, every ${interval} s | ${median(on).toFixed(1)} |`);
  console.log(`ratio on/off (median of per-rep ratios): ${ratio.toFixed(3)} → cost ${((1 - ratio) * 100).toFixed(1)} % ` +
    `(target ≤ 1 %: ${ratio >= 0.99 ? 'ok' : 'MISS'}); ${points} system metric points per key logged in all`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
