// Data-parallel throughput on this machine, as a user gets it: `new Trainer({ devices: N })` (the Trainer starts
// the other local ranks; each rank's engine takes the node's CPUs split between the ranks) against
// `new Trainer()` (one process, the engine's default threads), the same global batch and samples, convnext_atto
// with the localization head on 3×128×32 inputs. No thread count or OMP_* variable is set on either side; the
// header prints OMP_WAIT_POLICY and the threads each side chose.
// Prints samples/s (epochs after the first), the ratio, and the all-reduce (+ per-batch agreement) time per step.
// Usage: npx tsx benchmarks/ddp/throughput.ts [--ranks 2] [--batch 16] [--samples 256] [--epochs 3]
import { spawn } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: {
  ranks: { type: 'string', default: '2' }, batch: { type: 'string', default: '16' },
  samples: { type: 'string', default: '256' }, epochs: { type: 'string', default: '3' },
} });
const ranks = Number(values.ranks), batch = Number(values.batch);
const samples = Number(values.samples), epochs = Number(values.epochs);
const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));

interface Epoch { seconds: number; samples: number; batches: number; syncSeconds: number }

async function run(devices: number, perRankBatch: number): Promise<{ epochs: Epoch[]; threads: string }> {
  const cfg = JSON.stringify({ devices, batchSize: perRankBatch, samples, epochs, height: 128, width: 32 });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER, cfg], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      const m = /EPOCHS (.*)/.exec(out);
      if (code !== 0 || !m) return reject(new Error(`devices ${devices}: exited with ${code}`));
      resolve({ epochs: JSON.parse(m[1]!) as Epoch[], threads: /THREADS (.*)/.exec(out)?.[1] ?? '?' });
    });
  });
}

const summarize = (e: Epoch[]) => {
  const warm = e.slice(1);
  const seconds = warm.reduce((a, x) => a + x.seconds, 0);
  const n = warm.reduce((a, x) => a + x.samples, 0);
  const steps = warm.reduce((a, x) => a + x.batches, 0);
  const sync = warm.reduce((a, x) => a + x.syncSeconds, 0);
  return { samplesPerSec: n / seconds, msPerStep: (seconds / steps) * 1000, syncMsPerStep: (sync / steps) * 1000 };
};

const one = await run(1, batch);
const many = await run(ranks, batch / ranks);
const single = summarize(one.epochs);
const ddp = summarize(many.epochs);
console.log(`convnext_atto localization, 3×128×32, global batch ${batch}, ${samples} samples, epochs 2…${epochs} timed; ` +
  `OMP_WAIT_POLICY=${process.env.OMP_WAIT_POLICY ?? 'unset'}, ${availableParallelism()} CPUs, load ${loadavg()[0]!.toFixed(1)}`);
console.log('| setup | threads per process | samples/s | ms/step | collectives ms/step |');
console.log('|---|---|---:|---:|---:|');
console.log(`| Trainer() | ${one.threads} | ${single.samplesPerSec.toFixed(1)} | ${single.msPerStep.toFixed(1)} | – |`);
console.log(`| Trainer({ devices: ${ranks} }) (Gloo, loopback) | ${many.threads} | ${ddp.samplesPerSec.toFixed(1)} | ${ddp.msPerStep.toFixed(1)} | ${ddp.syncMsPerStep.toFixed(2)} |`);
console.log(`ratio ${ranks} ranks / 1 process: ${(ddp.samplesPerSec / single.samplesPerSec).toFixed(2)}×`);
