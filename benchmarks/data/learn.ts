// Learnability of the synthetic Heimdall data: convnext_atto (7 input channels, localization head) trained on
// N synthetic samples with the reference split, then the test split's position error next to the baseline of
// always predicting the training split's centroid (issue 4's main job: ≥ 3× better). Prints per-epoch figures.
//   npx tsx benchmarks/data/learn.ts [--samples 2000] [--epochs 8] [--lr 2e-3] [--batch 32] [--preset default|reference]
//        [--clutter MIN,MAX] [--shadowing MIN,MAX]   (dB: override the generator's loss ranges)
//        [--head-dropout P]   (the localization MLPs' dropout; default the reference's 0.3, 0.2)
// Needs the built addon (npm run build:native, or HEIMDALL_TORCH_ADDON=<path>).
import { HeimdallDataModule } from '../../lib/data/heimdall.js';
import { native } from '../../lib/native.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};
const samples = Number(arg('--samples', '2000'));
const epochs = Number(arg('--epochs', '8'));
const lr = Number(arg('--lr', '2e-3'));
const batchSize = Number(arg('--batch', '32'));
const preset = arg('--preset', 'default') as 'default' | 'reference';
const headDropout = process.argv.includes('--head-dropout') ? Number(arg('--head-dropout', '0')) : undefined;
const pair = (v: string | undefined) => (v ? (v.split(',').map(Number) as [number, number]) : undefined);
const clutterDb = pair(process.argv.includes('--clutter') ? arg('--clutter', '') : undefined);
const shadowingDb = pair(process.argv.includes('--shadowing') ? arg('--shadowing', '') : undefined);

const addon = native();
const started = process.hrtime.bigint();
const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;

const data = HeimdallDataModule.synthetic({ samples, seed: 0, preset, clutterDb, shadowingDb });
await data.materialize();
console.log(`generated ${samples} samples in ${elapsed().toFixed(1)} s (${(samples / elapsed()).toFixed(0)} samples/s)`);
const { train, val, test } = data.split(0);
const steps = Math.ceil(train.size / batchSize) * epochs;
const model = new addon.Model({ variant: 'atto', head: 'localization', inChans: 7, seed: 0, headDropout });
const engine = new addon.Engine(model, {
  device: 'cpu', seed: 0, positionScale: data.positionScale,
  optimizer: { name: 'adamw', lr, weightDecay: 0.05 },
  schedule: { name: 'cosine', warmupSteps: Math.min(50, Math.floor(steps / 10)), totalSteps: steps, minLr: 1e-6 },
});
for (let e = 0; e < epochs; e++) {
  const r = await engine.trainEpoch(train, { batchSize, maxEpochs: epochs });
  const v = await engine.evaluate(val, { batchSize: 64 });
  console.log(`epoch ${e + 1}: train loss ${r.metrics.loss?.toFixed(3)} (${r.samplesPerSec.toFixed(0)} samples/s), ` +
    `val loss ${v.metrics.loss?.toFixed(3)}, val error ${(v.metrics.position_error_m! / 1000).toFixed(1)} km  [${elapsed().toFixed(0)} s]`);
}
const t = await engine.evaluate(test, { batchSize: 64 });
const base = data.centroidBaseline(train, test);
const err = t.metrics.position_error_m!;
console.log(`test position error: ${(err / 1000).toFixed(1)} km mean; centroid baseline ${(base.mean / 1000).toFixed(1)} km ` +
  `→ ${(base.mean / err).toFixed(2)}× better (target ≥ 3×); wall ${elapsed().toFixed(0)} s`);
