// Heimdall data benchmark: how fast the synthetic RF generator produces features (IQ simulation + mel
// spectrogram), against the training throughput of convnext_atto on the same 7×128×32 inputs, in one run:
//   1. the generator on one thread (materialize() with 1 ATen thread: what the loader thread does per sample),
//   2. materialize() on the engine's default thread count, as a user gets it (or `--threads N`): all samples at
//      once, what `train` does before epoch 1,
//   3. a training epoch of convnext_atto (batch 32) on the cached features, for the ratio,
//   4. a training epoch streaming (no cache: features generated on the loader thread during training).
// Each row also gives samples per CPU-second of this process (user + sys), which holds on a shared machine.
//   npx tsx benchmarks/data/generator.ts [--samples 1000] [--threads N]
// Needs the built addon (npm run build:native, or HEIMDALL_TORCH_ADDON=<path>).
import { HeimdallDataModule } from '../../lib/data/heimdall.js';
import { native } from '../../lib/native.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};
const samples = Number(arg('--samples', '1000'));
const threadsArg = arg('--threads', '');

const addon = native();
if (threadsArg) addon.setNumThreads(Number(threadsArg));
const threads = addon.torchInfo().threads; // the default a user gets, unless --threads was given
const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const cpuSeconds = (c0: NodeJS.CpuUsage) => {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
};

// 1. one thread, on a fresh data set (drawing the transmitters is part of it)
addon.setNumThreads(1);
const single = Math.min(samples, 300);
let c0 = process.cpuUsage();
let t0 = process.hrtime.bigint();
await HeimdallDataModule.synthetic({ samples: single, seed: 3 }).materialize();
const single_s = seconds(t0);
const single_cpu = cpuSeconds(c0);

// 2. all threads
addon.setNumThreads(threads);
c0 = process.cpuUsage();
t0 = process.hrtime.bigint();
const data = HeimdallDataModule.synthetic({ samples, seed: 1 });
await data.materialize();
const materialize = seconds(t0);
const materialize_cpu = cpuSeconds(c0);

const model = new addon.Model({ variant: 'atto', head: 'localization', inChans: 7, seed: 0 });
const engine = new addon.Engine(model, { device: 'cpu', seed: 0, threads, positionScale: data.positionScale });
c0 = process.cpuUsage();
t0 = process.hrtime.bigint();
const epoch = await engine.trainEpoch(data.dataset, { batchSize: 32, maxEpochs: 1 });
const train = seconds(t0);
const train_cpu = cpuSeconds(c0);

// Streaming: generation inside the loader during training (no cache).
const streaming = HeimdallDataModule.synthetic({ samples: Math.min(samples, 256), seed: 2, cache: false });
const engine2 = new addon.Engine(new addon.Model({ variant: 'atto', head: 'localization', inChans: 7, seed: 0 }), { device: 'cpu', seed: 0, threads, positionScale: data.positionScale });
t0 = process.hrtime.bigint();
const streamEpoch = await engine2.trainEpoch(streaming.dataset, { batchSize: 32, maxEpochs: 1 });
const stream = seconds(t0);

const row = (name: string, v: number, cpu?: number) =>
  console.log(`${name.padEnd(60)} ${v.toFixed(1).padStart(9)} samples/s${cpu ? `  ${cpu.toFixed(1).padStart(7)} samples/CPU-s` : ''}`);
console.log(`Heimdall synthetic data, ${samples} samples, ${threads} threads`);
row(`generator: 1 thread (IQ + mel, ${single} samples)`, single / single_s, single / single_cpu);
row(`generator: materialize() on ${threads} threads`, samples / materialize, samples / materialize_cpu);
row('training: convnext_atto, batch 32, cached features', epoch.samples / train, epoch.samples / train_cpu);
row('training: convnext_atto, batch 32, streaming (no cache)', streamEpoch.samples / stream);
console.log(`ratio generator / training: ${((samples / materialize) / (epoch.samples / train)).toFixed(2)}×`);
