// Training-step throughput: heimdall-torch (the addon's Engine.trainEpoch) vs PyTorch eager in Python
// (benchmarks/train_throughput.py: timm's convnext_*), same libtorch, same threads, same machine, one run.
//
//   npx tsx benchmarks/train_throughput.ts                       # CPU, default set (~3 min on 2 quiet cores, ~8 under load)
//   npx tsx benchmarks/train_throughput.ts --reps 7 --steps-scale 3 --json out.json    # longer, steadier
//   npx tsx benchmarks/train_throughput.ts --only atto:128x32:8 --reps 9
//   npx tsx benchmarks/train_throughput.ts --device cuda --precision bf16-mixed --channels-last
//
// A step is forward + loss + backward + AdamW step + zero_grad (set to none), on a regression head with
// 2 outputs and MSE on both sides (see the .py's docstring for what the anchor does each step). Each
// configuration gets two fresh child processes (ours: this file with --worker; the anchor: the .py with
// --serve), so peak RSS is per configuration. After warm-up reps, timed reps alternate between the two
// (ABBA order), and the ratio is the median of the per-pair ratios, which cancels slow drifts in the load
// of a shared machine. A rep is one epoch of `steps` batches on our side (timed from JS: the Promise's
// wall time, batch events delivered to a JS callback as the Trainer does) and `steps` steps in Python.
//
// Flags: --variants atto,tiny  --shapes heimdall,224  --batches 32,8 (heimdall shape; 224 uses --batches224)
//        --batches224 8  --only variant:HxW:batch[,…]  --reps N (5)  --warmup N (1)  --steps N (override)
//        --steps-scale X  --threads N (default: CPU cores)  --device cpu|cuda|cuda:N
//        --precision 32|bf16-mixed|16-mixed  --channels-last  --py-optimizer default|fused|foreach|loop
//        --omp passive|inherit (OMP_WAIT_POLICY=PASSIVE for both children, the default; or leave the env)
//        --python PATH  --json FILE  --verbose  --help
// On CUDA the defaults are 2 warm-up reps and 20× the CPU step counts (--steps-scale).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const SELF = fileURLToPath(import.meta.url);

interface Config {
  variant: string;
  height: number;
  width: number;
  batch: number;
  steps: number;
}

interface RunOptions {
  threads: number;
  device: string;
  precision: '32' | 'bf16-mixed' | '16-mixed';
  channelsLast: boolean;
}

type Json = Record<string, unknown>;

// ---- arguments -----------------------------------------------------------------------------------------

function parseArgs(argv: string[]): Map<string, string | true> {
  const out = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) out.set(a.slice(2, eq), a.slice(eq + 1));
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) out.set(a.slice(2), argv[++i]!);
    else out.set(a.slice(2), true);
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const str = (k: string, d: string) => (typeof args.get(k) === 'string' ? (args.get(k) as string) : d);
const num = (k: string, d: number) => {
  const v = args.get(k);
  if (typeof v !== 'string') return d;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${k} needs a number, got ${v}`);
  return n;
};

// ---- our side: a worker process that trains through the addon -------------------------------------------

async function worker(cfg: Config, run: RunOptions): Promise<void> {
  const { native } = await import('../lib/native.js');
  const addon = native();
  const model = new addon.Model({ variant: cfg.variant, head: 'regression', outputs: 2, inChans: 3, seed: 42 });
  const engine = new addon.Engine(model, {
    device: run.device,
    optimizer: { name: 'adamw', lr: 1e-3, weightDecay: 1e-5 },
    schedule: { name: 'constant' },
    precision: run.precision,
    channelsLast: run.channelsLast,
    threads: run.threads,
    seed: 42,
  });
  const n = cfg.batch * cfg.steps;
  const per = 3 * cfg.height * cfg.width;
  const inputs = new Float32Array(n * per);
  const targets = new Float32Array(n * 2);
  let s = 0x9e3779b9; // xorshift: uniform [0, 1) like the anchor's torch.rand
  const rnd = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  for (let i = 0; i < inputs.length; i++) inputs[i] = rnd();
  for (let i = 0; i < targets.length; i++) targets[i] = rnd() * 2 - 1;
  const data = addon.tensorDataset(inputs, [n, 3, cfg.height, cfg.width], targets, [n, 2]);
  const info = addon.torchInfo();
  const send = (o: Json) => process.stdout.write(JSON.stringify(o) + '\n');
  send({ ready: true, torch: info.libtorch, threads: info.threads, device: engine.device, rssReadyKb: process.resourceUsage().maxRSS });

  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const cmd = line.trim();
    if (cmd === 'rep') {
      const losses: number[] = [];
      const f0 = process.resourceUsage().minorPageFault;
      const t0 = performance.now();
      const r = await engine.trainEpoch(data, { batchSize: cfg.batch, maxEpochs: 1_000_000 }, (e) => {
        losses.push(e.metrics.loss!);
      });
      const seconds = (performance.now() - t0) / 1000;
      if (r.batches !== cfg.steps) throw new Error(`expected ${cfg.steps} batches, trained ${r.batches}`);
      send({ seconds, nativeSeconds: r.seconds, lastLoss: losses.at(-1), minorFaults: process.resourceUsage().minorPageFault - f0 });
    } else if (cmd === 'done') {
      send({ maxRssKb: process.resourceUsage().maxRSS });
      lines.close();
      process.exit(0);
    } else if (cmd) {
      send({ error: `unknown command ${cmd}` });
    }
  }
}

// ---- the driver ----------------------------------------------------------------------------------------

/** A child process answering one JSON line per command line. */
class Child {
  private readonly queue: Array<(v: Json) => void> = [];
  private readonly early: Json[] = [];
  private exited: string | undefined;
  readonly proc: ChildProcess;

  constructor(readonly name: string, cmd: string, argv: string[], env: NodeJS.ProcessEnv) {
    this.proc = spawn(cmd, argv, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'inherit'] });
    const rl = createInterface({ input: this.proc.stdout! });
    rl.on('line', (line) => {
      let msg: Json;
      try {
        msg = JSON.parse(line) as Json;
      } catch {
        if (verbose) process.stderr.write(`[${name}] ${line}\n`);
        return;
      }
      const waiter = this.queue.shift();
      if (waiter) waiter(msg);
      else this.early.push(msg);
    });
    this.proc.on('exit', (code, signal) => {
      this.exited = `${name} exited (code ${code}, signal ${signal})`;
      for (const w of this.queue.splice(0)) w({ error: this.exited });
    });
  }

  next(): Promise<Json> {
    const m = this.early.shift();
    if (m) return Promise.resolve(m);
    if (this.exited) return Promise.resolve({ error: this.exited });
    return new Promise((res) => this.queue.push(res));
  }

  async send(cmd: string): Promise<Json> {
    const reply = this.next();
    this.proc.stdin!.write(cmd + '\n');
    const r = await reply;
    if (r.error) throw new Error(`${this.name}: ${String(r.error)}`);
    return r;
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

let verbose = false;

interface Result {
  config: Config;
  ours: { seconds: number[]; imagesPerSec: number; best: number; maxRssMb: number; readyRssMb: number; nativeSeconds: number[] };
  torch: { seconds: number[]; imagesPerSec: number; best: number; maxRssMb: number; readyRssMb: number; extra: Json };
  minorFaultsPerStep: { ours: number; torch: number }; // page faults (first touches of fresh memory) per step, median
  ratio: number; // median of per-pair ratios (ours img/s ÷ PyTorch img/s)
  ratioBest: number; // best rep vs best rep
  target: number;
}

function defaultSteps(variant: string, h: number, w: number, batch: number): number {
  // Aimed at ~1–3 s per rep on 2 shared cores; --steps-scale multiplies.
  const px = h * w * batch;
  const cost = (variant.includes('atto') ? 1 : variant.includes('tiny') ? 5.5 : 8) * px;
  return Math.max(3, Math.round(4e5 / cost));
}

async function main(): Promise<void> {
  verbose = args.has('verbose');
  if (args.has('help')) {
    const { readFileSync } = await import('node:fs');
    console.log(readFileSync(SELF, 'utf8').split('\n').filter((l, i) => i < 30 && l.startsWith('//')).map((l) => l.slice(3)).join('\n'));
    return;
  }
  const run: RunOptions = {
    threads: num('threads', availableParallelism()),
    device: str('device', 'cpu'),
    precision: str('precision', '32') as RunOptions['precision'],
    channelsLast: args.has('channels-last'),
  };
  if (args.has('worker')) {
    await worker(JSON.parse(str('worker', '{}')) as Config, run);
    return;
  }
  const cuda = run.device.startsWith('cuda');
  const reps = num('reps', 5);
  const warmup = num('warmup', cuda ? 2 : 1);
  const scale = num('steps-scale', cuda ? 20 : 1);
  const python = str('python', existsSync(join(ROOT, '.venv/bin/python')) ? join(ROOT, '.venv/bin/python') : 'python3');
  const pyOptimizer = str('py-optimizer', 'default');

  let configs: Config[] = [];
  const stepsFor = (v: string, h: number, w: number, b: number) =>
    args.has('steps') ? num('steps', 4) : Math.max(3, Math.round(defaultSteps(v, h, w, b) * scale));
  if (args.has('only')) {
    for (const spec of str('only', '').split(',')) {
      const m = /^([a-z]+):(\d+)x(\d+):(\d+)$/.exec(spec.trim());
      if (!m) throw new Error(`--only wants variant:HxW:batch (e.g. atto:128x32:8), got ${spec}`);
      const [h, w, b] = [Number(m[2]), Number(m[3]), Number(m[4])];
      configs.push({ variant: m[1]!, height: h, width: w, batch: b, steps: stepsFor(m[1]!, h, w, b) });
    }
  } else {
    const variants = str('variants', 'atto,tiny').split(',');
    const shapes = str('shapes', 'heimdall,224').split(',');
    const batches = str('batches', '32,8').split(',').map(Number);
    const batches224 = str('batches224', '8').split(',').map(Number);
    for (const v of variants) {
      for (const shape of shapes) {
        const [h, w] = shape === 'heimdall' ? [128, 32] : shape === '224' ? [224, 224] : shape.split('x').map(Number);
        for (const b of shape === '224' ? batches224 : batches)
          configs.push({ variant: v, height: h!, width: w!, batch: b, steps: stepsFor(v, h!, w!, b) });
      }
    }
  }
  configs = configs.filter((c) => c.batch > 0);

  // Both children get the same OpenMP settings. By default OMP_WAIT_POLICY=PASSIVE: on a shared, oversubscribed
  // machine libgomp's default spin-waiting made a 2-thread PyTorch step 10–20× slower (its worker spins while
  // the main thread needs the core), which measures the machine's load rather than the two stacks.
  // --omp inherit keeps the environment as it is (on a quiet machine both spin, as users get by default).
  const ompMode = str('omp', 'passive');
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: '1' };
  if (ompMode === 'passive') env.OMP_WAIT_POLICY = 'PASSIVE';
  else if (ompMode !== 'inherit') throw new Error(`--omp wants passive or inherit, got ${ompMode}`);
  const results: Result[] = [];
  let header: Json = {};
  const t0 = performance.now();
  for (const cfg of configs) {
    const tag = `convnext_${cfg.variant} 3×${cfg.height}×${cfg.width} b${cfg.batch} (${cfg.steps} steps/rep)`;
    process.stderr.write(`${tag} …`);
    const ours = new Child('heimdall-torch', process.execPath, [...process.execArgv, SELF, '--worker', JSON.stringify(cfg),
      '--threads', String(run.threads), '--device', run.device, '--precision', run.precision,
      ...(run.channelsLast ? ['--channels-last'] : [])], env);
    const py = new Child('pytorch', python, [join(HERE, 'train_throughput.py'), '--serve', '--variant', cfg.variant,
      '--height', String(cfg.height), '--width', String(cfg.width), '--batch', String(cfg.batch), '--steps', String(cfg.steps),
      '--threads', String(run.threads), '--device', run.device, '--precision', run.precision, '--optimizer', pyOptimizer,
      ...(run.channelsLast ? ['--channels-last'] : [])], env);
    const [oReady, pReady] = await Promise.all([ours.next(), py.next()]);
    if (oReady.error || pReady.error) throw new Error(String(oReady.error ?? pReady.error));
    header = { ours: oReady, torch: pReady };
    for (let w = 0; w < warmup; w++) {
      await ours.send('rep');
      await py.send('rep');
    }
    const oSec: number[] = [], oNative: number[] = [], pSec: number[] = [], pairs: number[] = [], oFaults: number[] = [], pFaults: number[] = [];
    for (let r = 0; r < reps; r++) {
      // ABBA: ours first on even reps, PyTorch first on odd ones.
      let o: Json, p: Json;
      if (r % 2 === 0) {
        o = await ours.send('rep');
        p = await py.send('rep');
      } else {
        p = await py.send('rep');
        o = await ours.send('rep');
      }
      oSec.push(o.seconds as number);
      oNative.push(o.nativeSeconds as number);
      pSec.push(p.seconds as number);
      pairs.push((p.seconds as number) / (o.seconds as number));
      oFaults.push((o.minorFaults as number) / cfg.steps);
      pFaults.push((p.minorFaults as number) / cfg.steps);
      process.stderr.write('.');
    }
    const [oDone, pDone] = await Promise.all([ours.send('done'), py.send('done')]);
    const imgs = cfg.batch * cfg.steps;
    const isHeimdallB8 = cfg.variant === 'atto' && cfg.height === 128 && cfg.width === 32 && cfg.batch === 8;
    const res: Result = {
      config: cfg,
      ours: { seconds: oSec, nativeSeconds: oNative, imagesPerSec: imgs / median(oSec), best: imgs / Math.min(...oSec),
        maxRssMb: (oDone.maxRssKb as number) / 1024, readyRssMb: (oReady.rssReadyKb as number) / 1024 },
      torch: { seconds: pSec, imagesPerSec: imgs / median(pSec), best: imgs / Math.min(...pSec),
        maxRssMb: (pDone.maxRssKb as number) / 1024, readyRssMb: (pReady.rssReadyKb as number) / 1024, extra: pDone },
      minorFaultsPerStep: { ours: median(oFaults), torch: median(pFaults) },
      ratio: median(pairs),
      ratioBest: Math.min(...pSec) / Math.min(...oSec),
      target: isHeimdallB8 ? 1.1 : 1.0,
    };
    results.push(res);
    process.stderr.write(` ${res.ours.imagesPerSec.toFixed(1)} vs ${res.torch.imagesPerSec.toFixed(1)} img/s\n`);
    if (verbose) {
      process.stderr.write(`  ours s/rep ${oSec.map((x) => x.toFixed(3)).join(' ')}; torch s/rep ${pSec.map((x) => x.toFixed(3)).join(' ')}\n`);
      process.stderr.write(`  minor page faults per step: ours ${res.minorFaultsPerStep.ours.toFixed(0)}, torch ${res.minorFaultsPerStep.torch.toFixed(0)}\n`);
    }
  }
  const wall = (performance.now() - t0) / 1000;

  const o = header.ours as Json, p = header.torch as Json;
  console.log(`\nTraining-step throughput (forward + MSE + backward + AdamW + zero_grad), images/s, median of ${reps} reps after ${warmup} warm-up rep(s)`);
  console.log(`device ${run.device}${p?.deviceName ? ` (${String(p.deviceName)})` : ''}, precision ${run.precision}${run.channelsLast ? ', channels_last' : ''}, ` +
    `threads ${run.threads} (addon reports ${String(o?.threads)}, PyTorch ${String(p?.threads)}); libtorch ${String(o?.torch)}, torch ${String(p?.torch)}; ` +
    `OMP_WAIT_POLICY=${env.OMP_WAIT_POLICY ?? '(unset)'}; PyTorch AdamW: ${pyOptimizer === 'default' ? 'default implementation' : pyOptimizer}; heimdall-torch AdamW: fused; ${wall.toFixed(0)} s`);
  const rows = [['model', 'input', 'batch', 'heimdall-torch', 'PyTorch eager', 'ratio', 'ratio (best)', 'target', 'peak RSS ours MB (ready)', 'peak RSS PyTorch MB (ready)']];
  for (const r of results) {
    const c = r.config;
    rows.push([`convnext_${c.variant}`, `3×${c.height}×${c.width}`, String(c.batch), r.ours.imagesPerSec.toFixed(1),
      r.torch.imagesPerSec.toFixed(1), `${r.ratio.toFixed(2)}×`, `${r.ratioBest.toFixed(2)}×`,
      `≥${r.target.toFixed(2)} ${r.ratio >= r.target ? 'ok' : 'MISS'}`, `${r.ours.maxRssMb.toFixed(0)} (${r.ours.readyRssMb.toFixed(0)})`, `${r.torch.maxRssMb.toFixed(0)} (${r.torch.readyRssMb.toFixed(0)})`]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const [i, row] of rows.entries()) {
    console.log('| ' + row.map((cell, j) => (j < 3 ? cell.padEnd(widths[j]!) : cell.padStart(widths[j]!))).join(' | ') + ' |');
    if (i === 0) console.log('|' + widths.map((w, j) => (j < 3 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|');
  }
  console.log('ratio = median over reps of (PyTorch s/rep ÷ ours s/rep), reps alternating; >1 means heimdall-torch is faster. ' +
    'RSS = peak resident set of each whole process (Node + addon + libtorch vs Python + torch + timm); ' +
    '(ready) = after loading, building the model and the data, before the first step.');
  if (args.has('json')) {
    writeFileSync(str('json', 'train_throughput.json'), JSON.stringify({ run, omp: env.OMP_WAIT_POLICY ?? null, reps, warmup, pyOptimizer, header, results, wallSeconds: wall }, null, 2));
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
