// One rank of benchmarks/ddp/throughput.ts (or the single process when WORLD_SIZE is unset): trains convnext_atto
// (localization head) on in-memory 3×H×W data and prints `EPOCHS <json>` from rank 0.
// argv[2]: JSON { batchSize, samples, epochs, threads, height, width }.
import { native } from '../../lib/native.js';

const cfg = JSON.parse(process.argv[2]!) as { batchSize: number; samples: number; epochs: number; threads: number; height: number; width: number };
const rank = Number(process.env.RANK ?? 0);
const worldSize = Number(process.env.WORLD_SIZE ?? 1);
const addon = native();
const model = new addon.Model({ variant: 'atto', head: 'localization', seed: 1 });
const engine = new addon.Engine(model, { device: 'cpu', seed: 7, threads: cfg.threads, optimizer: { name: 'adamw', lr: 1e-3 } });
if (worldSize > 1) {
  const group = await addon.createProcessGroup({ rank, worldSize, masterPort: Number(process.env.MASTER_PORT) });
  await engine.setProcessGroup(group);
}
const n = cfg.samples;
const inputs = new Float32Array(n * 3 * cfg.height * cfg.width);
for (let i = 0; i < inputs.length; i++) inputs[i] = Math.sin(i * 0.37);
const targets = new Float32Array(n * 2);
for (let i = 0; i < targets.length; i++) targets[i] = Math.cos(i * 1.3) * 0.5;
const data = addon.tensorDataset(inputs, [n, 3, cfg.height, cfg.width], targets, [n, 2]);
const epochs = [];
for (let e = 0; e < cfg.epochs; e++) {
  const r = await engine.trainEpoch(data, { batchSize: cfg.batchSize, maxEpochs: cfg.epochs });
  epochs.push({ seconds: r.seconds, samples: r.samples, batches: r.batches, syncSeconds: r.syncSeconds });
}
if (rank === 0) console.log(`EPOCHS ${JSON.stringify(epochs)}`);
