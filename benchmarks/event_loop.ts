// Event-loop delay while the addon trains: perf_hooks.monitorEventLoopDelay during a fit of a few epochs
// (train + validate per epoch, batch events delivered to a JS callback), plus a 5 ms interval timer that
// counts how often it actually fired. Target: max ≤ 20 ms on 2 cores.
//
//   npx tsx benchmarks/event_loop.ts                     # convnext_atto, 3×128×32, batch 32, 3 epochs
//   npx tsx benchmarks/event_loop.ts --variant tiny --epochs 2 --samples 256 --threads 2 --json out.json
//   flags: --shape HxW --batch N --device cpu|cuda --control SECONDS (idle-loop control first; 0: none) --trace
//
// The same work cannot run synchronously from JS (the addon only offers the Promise API), so there is no
// blocking contrast to measure here; the reference figure is the training time itself: any stall of the
// event loop as long as one batch would show up as max delay ≈ one batch time.
import { writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { native } from '../lib/native.js';

function arg(name: string, d: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : d;
}

const variant = arg('variant', 'atto');
const epochs = Number(arg('epochs', '3'));
const samples = Number(arg('samples', '384'));
const batchSize = Number(arg('batch', '32'));
const [h, w] = arg('shape', '128x32').split('x').map(Number) as [number, number];
const threadsArg = arg('threads', ''); // default: the engine's own choice, as users get it

const device = arg('device', 'cpu');

const addon = native();
const model = new addon.Model({ variant, head: 'localization', seed: 1 });
const engine = new addon.Engine(model, { device, ...(threadsArg ? { threads: Number(threadsArg) } : {}), seed: 1, optimizer: { name: 'adamw', lr: 1e-3 } });
const threads = threadsArg ? Number(threadsArg) : addon.torchInfo().threads;

let s = 12345;
const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296);
const make = (n: number) => {
  const x = new Float32Array(n * 3 * h * w);
  for (let i = 0; i < x.length; i++) x[i] = rnd();
  const y = new Float32Array(n * 2);
  for (let i = 0; i < y.length; i++) y[i] = rnd() * 2 - 1;
  return addon.tensorDataset(x, [n, 3, h, w], y, [n, 2]);
};
const train = make(samples);
const val = make(Math.max(batchSize, Math.floor(samples / 4)));

// One warm-up batch so libtorch's lazy initialisation is not charged to the loop.
await engine.evaluate(val, { batchSize });

// Control: the same monitor over an idle event loop for a few seconds, before training. On a shared machine
// its max shows how late timers fire with no work of ours at all (other processes' load).
const controlSeconds = Number(arg('control', '3'));
const control = monitorEventLoopDelay({ resolution: 1 });
if (controlSeconds > 0) {
  const keepAlive = setInterval(() => {}, 5);
  control.enable();
  await new Promise((r) => setTimeout(r, controlSeconds * 1000));
  control.disable();
  clearInterval(keepAlive);
}

const hist = monitorEventLoopDelay({ resolution: 1 });
let ticks = 0;
const t0 = performance.now();
// The 5 ms timer also records where the loop was when it fired late (--trace prints the worst).
let phase = 'start';
let last = performance.now();
const spikes: Array<{ atMs: number; lateMs: number; phase: string }> = [];
const timer = setInterval(() => {
  ticks++;
  const now = performance.now();
  if (now - last - 5 > 8) spikes.push({ atMs: now - t0, lateMs: now - last - 5, phase });
  last = now;
}, 5);
hist.enable();
let batches = 0;
const epochTimes: number[] = [];
for (let e = 0; e < epochs; e++) {
  phase = `train epoch ${e} (before first batch)`;
  const r = await engine.trainEpoch(train, { batchSize, maxEpochs: epochs }, (ev) => {
    batches++;
    phase = `train epoch ${e} after batch ${ev.batch}`;
  });
  phase = `validate epoch ${e}`;
  await engine.evaluate(val, { batchSize });
  epochTimes.push(r.seconds);
}
hist.disable();
clearInterval(timer);
const seconds = (performance.now() - t0) / 1000;

const ms = (ns: number) => ns / 1e6;
const out = {
  variant: `convnext_${variant}`,
  input: `3×${h}×${w}`,
  batchSize,
  epochs,
  batches,
  threads,
  device,
  seconds,
  batchMs: (epochTimes.reduce((a, b) => a + b, 0) / batches) * 1000,
  delayMs: { max: ms(hist.max), p99: ms(hist.percentile(99)), p50: ms(hist.percentile(50)), mean: ms(hist.mean), min: ms(hist.min) },
  timer5ms: { fired: ticks, expected: Math.floor((seconds * 1000) / 5), spikesOver8ms: spikes.length },
};
console.log(`Event-loop delay during a fit of convnext_${variant} (${out.input}, batch ${batchSize}, ${epochs} epochs × ` +
  `${Math.ceil(samples / batchSize)} batches + validation, ${device}, ${threads} threads): ${seconds.toFixed(1)} s, ` +
  `${out.batchMs.toFixed(0)} ms per training batch`);
console.log(`  max ${out.delayMs.max.toFixed(2)} ms | p99 ${out.delayMs.p99.toFixed(2)} ms | p50 ${out.delayMs.p50.toFixed(2)} ms | ` +
  `mean ${out.delayMs.mean.toFixed(2)} ms  (monitorEventLoopDelay, 1 ms resolution; target max ≤ 20 ms: ` +
  `${out.delayMs.max <= 20 ? 'ok' : 'MISS'})`);
if (controlSeconds > 0) {
  (out as Record<string, unknown>).controlIdleDelayMs = { seconds: controlSeconds, max: ms(control.max), p99: ms(control.percentile(99)), mean: ms(control.mean) };
  console.log(`  control, idle loop for ${controlSeconds} s before training: max ${ms(control.max).toFixed(2)} ms | p99 ` +
    `${ms(control.percentile(99)).toFixed(2)} ms | mean ${ms(control.mean).toFixed(2)} ms (the machine's own noise)`);
}
console.log(`  a 5 ms setInterval fired ${ticks} times of ~${out.timer5ms.expected} possible`);
if (process.argv.includes('--trace')) {
  for (const sp of spikes.sort((a, b) => b.lateMs - a.lateMs).slice(0, 8))
    console.log(`  late by ${sp.lateMs.toFixed(1)} ms at ${sp.atMs.toFixed(0)} ms, during ${sp.phase}`);
}
const json = arg('json', '');
if (json) writeFileSync(json, JSON.stringify(out, null, 2));
