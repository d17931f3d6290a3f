// Training throughput as users get it: heimdall-torch's `trainer.fit()` through the public API against the
// PyTorch loop a user writes (benchmarks/train_throughput.py: timm + torch.optim.AdamW + DataLoader), eager and
// torch.compile, same torch/libtorch, same machine, one run, the environment left exactly as it is.
//
//   npx tsx benchmarks/train_throughput.ts                      # CPU, default set (~10 min on 2 quiet cores)
//   npx tsx benchmarks/train_throughput.ts --only atto:128x32:8 --reps 9
//   npx tsx benchmarks/train_throughput.ts --device cuda --precision bf16-mixed --channels-last
//
// Our side, as a user writes it:
//   const trainer = new Trainer({ maxEpochs, logger: false, optimizer: { name: 'adamw', lr: 1e-3 }, schedule: { name: 'constant' } });
//   await trainer.fit(ConvNeXt.regression('convnext_atto', 2), new TensorDataModule(x, shape, y, [n, 2], { batchSize, split: false }));
// and, for the end-to-end rows (`--e2e`), the same fit with an MLflowLogger (SQLite in a temporary folder, batch
// metrics every step) and a ModelCheckpoint (top 1 by train/loss + last, every epoch), as the CLI trains.
// A rep is one epoch on every side (ours: from the go signal, given in onTrainEpochStart, until every hook of
// that epoch has finished, checkpoint writes and logging included; the anchors: one pass over the DataLoader).
// Nothing is set for either side: no thread count, no OMP_* variable, no allocator. Each configuration gets
// fresh child processes (peak RSS per configuration); after warm-up the reps rotate the order of the sides,
// and each ratio is the median of the per-rep ratios, which cancels slow drifts in a shared machine's load.
//
// Flags: --variants atto,tiny  --shapes heimdall,224  --batches 32,8 (heimdall shape)  --batches224 8
//        --only variant:HxW:batch[,…]  --reps N (5)  --warmup N (1)  --steps N  --steps-scale X
//        --compile auto|all|none (auto: torch.compile on the 3×128×32 rows)  --e2e LIST (atto:128x32:32; 'none')
//        --e2e-steps N (44: the main job's 1400 training samples at batch 32)  --device cpu|cuda|cuda:N
//        --precision 32|bf16-mixed|16-mixed  --channels-last (both sides)
//        --profile-threads (per epoch: CPU seconds and context switches of each thread of each side, by name)
//        --python PATH  --json FILE  --verbose  --help
// On CUDA the defaults are 2 warm-up reps and 20× the CPU step counts (--steps-scale).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
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
  compile: boolean;
  e2e: boolean;
}

interface RunOptions {
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

// ---- our side: a child process that trains through trainer.fit() -----------------------------------------

async function worker(cfg: Config, run: RunOptions, withTracking: boolean): Promise<void> {
  const lib = await import('../lib/index.js');
  const { Trainer, ConvNeXt, TensorDataModule, Callback, ModelCheckpoint, MLflowTracker, torchInfo } = lib;
  const send = (o: Json) => process.stdout.write(JSON.stringify(o) + '\n');
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

  // The go signal for each epoch comes from the driver; the time of an epoch runs from its go until the next
  // epoch's start hook (or the end of training), so every hook of the epoch — checkpoints, logging — is in it.
  const lines = createInterface({ input: process.stdin });
  const waiting: Array<(cmd: string) => void> = [];
  const queued: string[] = [];
  lines.on('line', (l) => {
    const cmd = l.trim();
    if (!cmd) return;
    const w = waiting.shift();
    if (w) w(cmd);
    else queued.push(cmd);
  });
  const nextCommand = () => new Promise<string>((res) => (queued.length ? res(queued.shift()!) : waiting.push(res)));
  let t0 = 0;
  let f0 = 0;
  let timing = false;
  let lastLoss = NaN;
  const report = () => {
    if (!timing) return;
    timing = false;
    send({ seconds: (performance.now() - t0) / 1000, lastLoss, minorFaults: process.resourceUsage().minorPageFault - f0 });
  };
  class Gate extends Callback {
    override get stateKey() {
      return 'BenchmarkGate';
    }
    override async onTrainEpochStart(): Promise<void> {
      report();
      const cmd = await nextCommand();
      if (cmd === 'done') {
        // after the last rep: end fit at this epoch's first batch boundary
        trainer.stop('benchmark done');
        return;
      }
      if (cmd !== 'rep') throw new Error(`expected rep or done, got ${cmd}`);
      f0 = process.resourceUsage().minorPageFault;
      timing = true;
      t0 = performance.now();
    }
    override onTrainEpochEnd(_t: unknown, metrics: Record<string, number>): void {
      lastLoss = metrics['train/loss'] ?? NaN;
    }
    override onTrainEnd(): void {
      report();
    }
    override onInterrupt(): void {
      report();
    }
  }
  const root = mkdtempSync(join(tmpdir(), 'heimdall-bench-'));
  const maxEpochs = num('epochs', 1000);
  const tracker = withTracking ? new MLflowTracker({ trackingUri: `sqlite:///${join(root, 'mlflow.db')}`, experimentName: 'throughput' }) : undefined;
  const trainer = new Trainer({
    maxEpochs,
    device: run.device,
    precision: run.precision,
    ...(run.channelsLast ? { channelsLast: true } : {}),
    optimizer: { name: 'adamw', lr: 1e-3 },
    schedule: { name: 'constant' },
    defaultRootDir: root,
    enableProgressBar: false,
    handleSignals: false,
    callbacks: [new Gate(), ...(withTracking ? [new ModelCheckpoint({ monitor: 'train/loss', saveTopK: 1 })] : [])],
    logger: tracker ?? false,
  });
  const model = ConvNeXt.regression(`convnext_${cfg.variant}`, 2, { seed: 42 });
  const data = new TensorDataModule(inputs, [n, 3, cfg.height, cfg.width], targets, [n, 2], { batchSize: cfg.batch, split: false });
  const info = torchInfo();
  send({ ready: true, torch: info.libtorch, threads: info.threads, rssReadyKb: process.resourceUsage().maxRSS });
  const fitting = trainer.fit(model, data);
  fitting.catch((e: unknown) => {
    send({ error: String((e as Error)?.stack ?? e) });
    process.exit(1);
  });
  await fitting;
  await tracker?.close();
  rmSync(root, { recursive: true, force: true });
  send({ maxRssKb: process.resourceUsage().maxRSS });
  process.exit(0);
}

// ---- the driver ----------------------------------------------------------------------------------------

/** A child process answering one JSON line per command line. */
class Child {
  private readonly queue: Array<(v: Json) => void> = [];
  private readonly early: Json[] = [];
  private exited: string | undefined;
  readonly proc: ChildProcess;

  constructor(readonly name: string, cmd: string, argv: string[]) {
    this.proc = spawn(cmd, argv, { cwd: ROOT, env: process.env, stdio: ['pipe', 'pipe', 'inherit'] });
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

/** CPU seconds and context switches per thread of a process, summed by thread name (Linux /proc). */
type ThreadTimes = Map<string, { cpu: number; voluntary: number; involuntary: number; threads: number }>;
function threadTimes(pid: number): ThreadTimes {
  const out: ThreadTimes = new Map();
  const hz = 100; // USER_HZ
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cpu = (Number(f[11]) + Number(f[12])) / hz; // utime + stime
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      const vol = Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
      const invol = Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
      const e = out.get(name) ?? { cpu: 0, voluntary: 0, involuntary: 0, threads: 0 };
      e.cpu += cpu;
      e.voluntary += vol;
      e.involuntary += invol;
      e.threads += 1;
      out.set(name, e);
    } catch {
      /* the thread ended */
    }
  }
  return out;
}
function threadDelta(a: ThreadTimes, b: ThreadTimes): ThreadTimes {
  const out: ThreadTimes = new Map();
  for (const [k, v] of b) {
    const p = a.get(k) ?? { cpu: 0, voluntary: 0, involuntary: 0, threads: 0 };
    out.set(k, { cpu: v.cpu - p.cpu, voluntary: v.voluntary - p.voluntary, involuntary: v.involuntary - p.involuntary, threads: v.threads });
  }
  return out;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

let verbose = false;

interface Side {
  name: string;
  seconds: number[];
  imagesPerSec: number;
  maxRssMb: number;
  readyRssMb: number;
  ready: Json;
}

interface Result {
  config: Config;
  sides: Record<string, Side>;
  ratios: Record<string, number>; // median of per-rep ratios (ours faster > 1)
  targets: Record<string, number>;
}

function defaultSteps(variant: string, h: number, w: number, batch: number): number {
  // Aimed at ~1–3 s per epoch on 2 cores; --steps-scale multiplies.
  const px = h * w * batch;
  const cost = (variant.includes('atto') ? 1 : variant.includes('tiny') ? 5.5 : 8) * px;
  return Math.max(4, Math.round(8e5 / cost));
}

function targetsFor(c: Config, cuda: boolean): Record<string, number> {
  const heimdall = c.height === 128 && c.width === 32;
  if (cuda) return { eager: 1.1 };
  const t: Record<string, number> = { eager: c.variant === 'atto' && heimdall ? 1.2 : 1.0 };
  if (c.compile && c.variant === 'atto' && heimdall && c.batch === 8) t.compile = 1.0;
  if (c.e2e) t.e2e = 0.97;
  return t;
}

async function main(): Promise<void> {
  verbose = args.has('verbose');
  if (args.has('help')) {
    const { readFileSync } = await import('node:fs');
    console.log(readFileSync(SELF, 'utf8').split('\n').filter((l, i) => i < 30 && l.startsWith('//')).map((l) => l.slice(3)).join('\n'));
    return;
  }
  const run: RunOptions = {
    device: str('device', 'cpu'),
    precision: str('precision', '32') as RunOptions['precision'],
    channelsLast: args.has('channels-last'),
  };
  if (args.has('worker')) {
    await worker(JSON.parse(str('worker', '{}')) as Config, run, args.has('tracking'));
    return;
  }
  const cuda = run.device.startsWith('cuda');
  const reps = num('reps', 5);
  const warmup = num('warmup', cuda ? 2 : 1);
  const scale = num('steps-scale', cuda ? 20 : 1);
  const python = str('python', existsSync(join(ROOT, '.venv/bin/python')) ? join(ROOT, '.venv/bin/python') : 'python3');
  const compileMode = str('compile', 'auto');
  const e2eList = str('e2e', 'atto:128x32:32');
  const profile = args.has('profile-threads');

  const stepsFor = (v: string, h: number, w: number, b: number) =>
    args.has('steps') ? num('steps', 4) : Math.max(3, Math.round(defaultSteps(v, h, w, b) * scale));
  const specs: Array<[string, number, number, number]> = [];
  if (args.has('only')) {
    for (const spec of str('only', '').split(',')) {
      const m = /^([a-z]+):(\d+)x(\d+):(\d+)$/.exec(spec.trim());
      if (!m) throw new Error(`--only wants variant:HxW:batch (e.g. atto:128x32:8), got ${spec}`);
      specs.push([m[1]!, Number(m[2]), Number(m[3]), Number(m[4])]);
    }
  } else {
    for (const v of str('variants', 'atto,tiny').split(',')) {
      for (const shape of str('shapes', 'heimdall,224').split(',')) {
        const [h, w] = shape === 'heimdall' ? [128, 32] : shape === '224' ? [224, 224] : shape.split('x').map(Number);
        for (const b of (shape === '224' ? str('batches224', '8') : str('batches', '32,8')).split(',').map(Number))
          if (b > 0) specs.push([v, h!, w!, b]);
      }
    }
  }
  const configs: Config[] = specs.map(([v, h, w, b]) => ({
    variant: v, height: h, width: w, batch: b, steps: stepsFor(v, h, w, b),
    compile: compileMode === 'all' || (compileMode === 'auto' && h === 128 && w === 32),
    e2e: false,
  }));
  if (e2eList !== 'none') {
    for (const spec of e2eList.split(',')) {
      const m = /^([a-z]+):(\d+)x(\d+):(\d+)$/.exec(spec.trim());
      if (!m) throw new Error(`--e2e wants variant:HxW:batch, got ${spec}`);
      configs.push({ variant: m[1]!, height: Number(m[2]), width: Number(m[3]), batch: Number(m[4]),
        steps: num('e2e-steps', 44), compile: false, e2e: true });
    }
  }

  const results: Result[] = [];
  const t0 = performance.now();
  const load0 = loadavg()[0]!;
  for (const cfg of configs) {
    const tag = `convnext_${cfg.variant} 3×${cfg.height}×${cfg.width} b${cfg.batch} (${cfg.steps} steps/epoch${cfg.e2e ? ', logger + checkpoints' : ''})`;
    process.stderr.write(`${tag} …`);
    const oursArgv = (tracking: boolean) => [...process.execArgv, SELF, '--worker', JSON.stringify(cfg),
      '--device', run.device, '--precision', run.precision, ...(run.channelsLast ? ['--channels-last'] : []),
      ...(tracking ? ['--tracking'] : []),
      '--epochs', String(warmup + reps + 1)];
    const pyArgv = (mode: string) => [join(HERE, 'train_throughput.py'), '--serve', '--mode', mode, '--variant', cfg.variant,
      '--height', String(cfg.height), '--width', String(cfg.width), '--batch', String(cfg.batch), '--steps', String(cfg.steps),
      '--device', run.device, '--precision', run.precision, ...(run.channelsLast ? ['--channels-last'] : [])];
    const children: Record<string, Child> = {};
    if (cfg.e2e) {
      children.ours = new Child('heimdall-torch', process.execPath, oursArgv(false));
      children.e2e = new Child('heimdall-torch + logger + checkpoints', process.execPath, oursArgv(true));
    } else {
      children.ours = new Child('heimdall-torch', process.execPath, oursArgv(false));
      children.eager = new Child('PyTorch eager', python, pyArgv('eager'));
      if (cfg.compile) children.compile = new Child('torch.compile', python, pyArgv('compile'));
    }
    const names = Object.keys(children);
    // The reps start once every side is ready (torch.compile has compiled).
    const ready: Record<string, Json> = {};
    for (const k of names) {
      ready[k] = await children[k]!.next();
      if (ready[k]!.error) throw new Error(`${k}: ${String(ready[k]!.error)}`);
    }
    for (let w = 0; w < warmup; w++) for (const k of names) await children[k]!.send('rep');
    const secs: Record<string, number[]> = Object.fromEntries(names.map((k) => [k, [] as number[]]));
    const perRep: Record<string, number[]> = {};
    for (let r = 0; r < reps; r++) {
      const order = names.map((_, i) => names[(i + r) % names.length]!); // rotate who goes first
      if (r % 2 === 1) order.reverse();
      const got: Record<string, number> = {};
      for (const k of order) {
        const before = profile ? threadTimes(children[k]!.proc.pid!) : undefined;
        got[k] = (await children[k]!.send('rep')).seconds as number;
        if (before) {
          const d = threadDelta(before, threadTimes(children[k]!.proc.pid!));
          const parts = [...d].filter(([, v]) => v.cpu > 0.005 || v.voluntary + v.involuntary > 20).sort((x, y) => y[1].cpu - x[1].cpu)
            .map(([n, v]) => `${n}×${v.threads} ${v.cpu.toFixed(2)}s cs ${v.voluntary}/${v.involuntary}`);
          process.stderr.write(`\n  [${k}] ${got[k]!.toFixed(3)} s: ${parts.join('; ')}`);
        }
      }
      for (const k of names) secs[k]!.push(got[k]!);
      for (const k of names) if (k !== 'ours') (perRep[k] ??= []).push(k === 'e2e' ? got.ours! / got.e2e! : got[k]! / got.ours!);
      process.stderr.write('.');
    }
    const doneMsgs: Record<string, Json> = {};
    for (const k of names) doneMsgs[k] = await children[k]!.send('done');
    const imgs = cfg.batch * cfg.steps;
    const sides: Record<string, Side> = {};
    for (const k of names) {
      sides[k] = { name: children[k]!.name, seconds: secs[k]!, imagesPerSec: imgs / median(secs[k]!),
        maxRssMb: (doneMsgs[k]!.maxRssKb as number) / 1024, readyRssMb: (ready[k]!.rssReadyKb as number) / 1024, ready: ready[k]! };
    }
    const res: Result = { config: cfg, sides, ratios: Object.fromEntries(Object.entries(perRep).map(([k, v]) => [k, median(v)])),
      targets: targetsFor(cfg, cuda) };
    results.push(res);
    process.stderr.write(' ' + names.map((k) => `${k} ${sides[k]!.imagesPerSec.toFixed(1)}`).join(', ') + ' img/s\n');
    if (verbose) for (const k of names) process.stderr.write(`  ${k} s/epoch ${secs[k]!.map((x) => x.toFixed(3)).join(' ')}\n`);
  }
  const wall = (performance.now() - t0) / 1000;

  const anyReady = results[0]?.sides.ours?.ready ?? {};
  const pyReady = results.find((r) => r.sides.eager)?.sides.eager?.ready ?? {};
  console.log(`\nTraining throughput, images/s (median of ${reps} epochs after ${warmup} warm-up epoch(s)); ` +
    `device ${run.device}${pyReady.deviceName ? ` (${String(pyReady.deviceName)})` : ''}, precision ${run.precision}${run.channelsLast ? ', channels_last' : ''}; ` +
    `${cpus().length} CPUs, load ${load0.toFixed(1)} → ${loadavg()[0]!.toFixed(1)}; libtorch ${String(anyReady.torch)}, torch ${String(pyReady.torch ?? '?')}; ` +
    `threads: ours ${String(anyReady.threads)} (engine default), PyTorch ${String(pyReady.threads ?? '?')} (default); ` +
    `OMP_WAIT_POLICY=${process.env.OMP_WAIT_POLICY ?? '(unset)'}; ${wall.toFixed(0)} s`);
  const fmtRatio = (r: Result, k: string) => {
    const v = r.ratios[k];
    if (v === undefined) return '–';
    const t = r.targets[k];
    return `${v.toFixed(2)}×${t !== undefined ? (v >= t ? ' ok' : ` MISS ≥${t}`) : ''}`;
  };
  const rows = [['model', 'input', 'batch', 'heimdall-torch', 'PyTorch eager', 'torch.compile (compile s)', 'vs eager', 'vs compile', 'peak RSS MB ours / eager']];
  for (const r of results.filter((x) => !x.config.e2e)) {
    const c = r.config, s = r.sides;
    rows.push([`convnext_${c.variant}`, `3×${c.height}×${c.width}`, String(c.batch), s.ours!.imagesPerSec.toFixed(1),
      s.eager?.imagesPerSec.toFixed(1) ?? '–',
      s.compile ? `${s.compile.imagesPerSec.toFixed(1)} (${Number(s.compile.ready.compileSeconds).toFixed(0)})` : '–',
      fmtRatio(r, 'eager'), fmtRatio(r, 'compile'),
      `${s.ours!.maxRssMb.toFixed(0)} / ${s.eager?.maxRssMb.toFixed(0) ?? '–'}${s.eager ? (s.ours!.maxRssMb <= s.eager.maxRssMb ? ' ok' : ' MISS') : ''}`]);
  }
  printTable(rows);
  console.log('vs = median over epochs of (their s/epoch ÷ ours), order rotating; > 1: heimdall-torch is faster. Peak RSS of each whole process.');
  const e2e = results.filter((x) => x.config.e2e);
  if (e2e.length) {
    const rows2 = [['model', 'input', 'batch', 'steps/epoch', 'fit, logger: false', 'fit + MLflowLogger + ModelCheckpoint', 'ratio']];
    for (const r of e2e) {
      const c = r.config;
      rows2.push([`convnext_${c.variant}`, `3×${c.height}×${c.width}`, String(c.batch), String(c.steps), r.sides.ours!.imagesPerSec.toFixed(1),
        r.sides.e2e!.imagesPerSec.toFixed(1), fmtRatio(r, 'e2e')]);
    }
    console.log('\nEnd to end: the same fit with tracking (SQLite, batch metrics every step) and checkpoints (top 1 + last, every epoch)');
    printTable(rows2);
  }
  if (args.has('json')) writeFileSync(str('json', 'train_throughput.json'), JSON.stringify({ run, reps, warmup, results, wallSeconds: wall }, null, 2));
}

function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const [i, row] of rows.entries()) {
    console.log('| ' + row.map((cell, j) => (j < 3 ? cell.padEnd(widths[j]!) : cell.padStart(widths[j]!))).join(' | ') + ' |');
    if (i === 0) console.log('|' + widths.map((w, j) => (j < 3 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|');
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
