// Data-parallel throughput on this machine: 1 process × T threads against N ranks × T/N threads (Gloo over
// loopback), the same global batch and samples, convnext_atto with the localization head on 3×128×32 inputs.
// Prints samples/s (epochs after the first), the ratio, and the all-reduce (+ per-batch agreement) time per step.
// Usage: npx tsx benchmarks/ddp/throughput.ts [--ranks 2] [--threads 2] [--batch 16] [--samples 256] [--epochs 3]
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort } from '../../lib/trainer/distributed.js';

const { values } = parseArgs({ options: {
  ranks: { type: 'string', default: '2' }, threads: { type: 'string', default: '2' }, batch: { type: 'string', default: '16' },
  samples: { type: 'string', default: '256' }, epochs: { type: 'string', default: '3' },
} });
const ranks = Number(values.ranks), threads = Number(values.threads), batch = Number(values.batch);
const samples = Number(values.samples), epochs = Number(values.epochs);
const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));

interface Epoch { seconds: number; samples: number; batches: number; syncSeconds: number }

async function run(world: number, perRankThreads: number, perRankBatch: number): Promise<Epoch[]> {
  const port = await freePort();
  const cfg = JSON.stringify({ batchSize: perRankBatch, samples, epochs, threads: perRankThreads, height: 128, width: 32 });
  let result: Epoch[] = [];
  await Promise.all(Array.from({ length: world }, (_, rank) => new Promise<void>((resolve, reject) => {
    const env = { ...process.env, OMP_NUM_THREADS: String(perRankThreads), ...(world > 1 ? { RANK: String(rank), WORLD_SIZE: String(world), MASTER_PORT: String(port) } : {}) };
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER, cfg], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      const m = /EPOCHS (.*)/.exec(out);
      if (m) result = JSON.parse(m[1]!) as Epoch[];
      code === 0 ? resolve() : reject(new Error(`rank ${rank} exited with ${code}`));
    });
  })));
  return result;
}

const summarize = (e: Epoch[]) => {
  const warm = e.slice(1);
  const seconds = warm.reduce((a, x) => a + x.seconds, 0);
  const n = warm.reduce((a, x) => a + x.samples, 0);
  const steps = warm.reduce((a, x) => a + x.batches, 0);
  const sync = warm.reduce((a, x) => a + x.syncSeconds, 0);
  return { samplesPerSec: n / seconds, msPerStep: (seconds / steps) * 1000, syncMsPerStep: (sync / steps) * 1000 };
};

const single = summarize(await run(1, threads, batch));
const ddp = summarize(await run(ranks, Math.max(1, Math.floor(threads / ranks)), batch / ranks));
console.log(`convnext_atto localization, 3×128×32, global batch ${batch}, ${samples} samples, epochs 2…${epochs} timed`);
console.log('| setup | samples/s | ms/step | collectives ms/step |');
console.log('|---|---:|---:|---:|');
console.log(`| 1 process × ${threads} threads | ${single.samplesPerSec.toFixed(1)} | ${single.msPerStep.toFixed(1)} | – |`);
console.log(`| ${ranks} ranks × ${Math.max(1, Math.floor(threads / ranks))} thread (Gloo, loopback) | ${ddp.samplesPerSec.toFixed(1)} | ${ddp.msPerStep.toFixed(1)} | ${ddp.syncMsPerStep.toFixed(2)} |`);
console.log(`ratio ${ranks} ranks / 1 process: ${(ddp.samplesPerSec / single.samplesPerSec).toFixed(2)}×`);
