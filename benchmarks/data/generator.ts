// Heimdall data benchmark: how fast the synthetic RF generator produces features (IQ simulation + mel
// spectrogram), against the training throughput of convnext_atto on the same 7×128×32 inputs, in one run:
//   1. first touch on the loader's thread (what epoch 1 costs when features are generated on the fly),
//   2. materialize() (all samples at once on ATen's worker threads),
//   3. cached batches with augmentation (every later epoch),
//   4. a training epoch of convnext_atto (batch 32) through the native loader, for the ratio.
//   npx tsx benchmarks/data/generator.ts [--samples 1000] [--threads 2]
// Needs the built addon (npm run build:native, or HEIMDALL_TORCH_ADDON=<path>).
import { HeimdallDataModule } from '../../lib/data/heimdall.js';
import { native } from '../../lib/native.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};
const samples = Number(arg('--samples', '1000'));
const threads = Number(arg('--threads', '2'));

const addon = native();
addon.setNumThreads(threads);
const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

// 1. + 3.: through the engine's evaluate() on an untrained model would mix in the model; time the loader path
//    by materializing a fresh data set instead, once on worker threads.
const data = HeimdallDataModule.synthetic({ samples, seed: 1 });
let t0 = process.hrtime.bigint();
await data.materialize();
const materialize = seconds(t0);

const model = new addon.Model({ variant: 'atto', head: 'localization', inChans: 7, seed: 0 });
const engine = new addon.Engine(model, { device: 'cpu', seed: 0, threads, positionScale: data.positionScale });
t0 = process.hrtime.bigint();
const epoch = await engine.trainEpoch(data.dataset, { batchSize: 32, maxEpochs: 1 });
const train = seconds(t0);

// Streaming: generation inside the loader during training (no cache).
const streaming = HeimdallDataModule.synthetic({ samples: Math.min(samples, 256), seed: 2, cache: false });
const engine2 = new addon.Engine(new addon.Model({ variant: 'atto', head: 'localization', inChans: 7, seed: 0 }), { device: 'cpu', seed: 0, threads, positionScale: data.positionScale });
t0 = process.hrtime.bigint();
const streamEpoch = await engine2.trainEpoch(streaming.dataset, { batchSize: 32, maxEpochs: 1 });
const stream = seconds(t0);

const row = (name: string, v: number) => console.log(`${name.padEnd(52)} ${v.toFixed(1).padStart(9)} samples/s`);
console.log(`Heimdall synthetic data, ${samples} samples, ${threads} threads`);
row('generator: materialize() (IQ + mel, worker threads)', samples / materialize);
row('training: convnext_atto, batch 32, cached features', epoch.samples / train);
row('training: convnext_atto, batch 32, streaming (no cache)', streamEpoch.samples / stream);
console.log(`ratio generator / training: ${((samples / materialize) / (epoch.samples / train)).toFixed(2)}×`);
