// One side of benchmarks/ddp/throughput.ts, through the public API as a user writes it: `new Trainer({ devices })`
// (with devices > 1 the Trainer starts the other local ranks as copies of this script) trains convnext_atto
// (localization head) on in-memory 3×H×W data; rank 0 prints `EPOCHS <json>` and the threads each rank chose.
// argv[2]: JSON { devices, batchSize, samples, epochs, height, width }. Nothing else is set.
import { torchInfo } from '../../lib/native.js';
import { ConvNeXt, TensorDataModule, Trainer } from '../../lib/index.js';

const cfg = JSON.parse(process.argv[2]!) as { devices: number; batchSize: number; samples: number; epochs: number; height: number; width: number };
const n = cfg.samples;
const inputs = new Float32Array(n * 3 * cfg.height * cfg.width);
for (let i = 0; i < inputs.length; i++) inputs[i] = Math.sin(i * 0.37);
const targets = new Float32Array(n * 2);
for (let i = 0; i < targets.length; i++) targets[i] = Math.cos(i * 1.3) * 0.5;
const data = new TensorDataModule(inputs, [n, 3, cfg.height, cfg.width], targets, [n, 2], { batchSize: cfg.batchSize, split: false });
const trainer = new Trainer({ devices: cfg.devices, maxEpochs: cfg.epochs, logger: false, enableModelSummary: false });
const history = await trainer.fit(ConvNeXt.localization('atto', { seed: 1 }), data);
if (trainer.isGlobalZero) {
  const batches = trainer.trainBatches;
  const epochs = history.epochs.map((e) => ({ seconds: e.seconds, samples: e.samplesPerSec * e.seconds, batches, syncSeconds: e.syncSeconds }));
  console.log(`THREADS ${trainer.threads ?? `engine default (${torchInfo().threads})`}`);
  console.log(`EPOCHS ${JSON.stringify(epochs)}`);
}
