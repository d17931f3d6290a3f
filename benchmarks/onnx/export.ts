// ONNX benchmark, per ConvNeXt variant with the localization head on Heimdall inputs (3×128×32):
//   export time of the native exporter (target: convnext_large < 20 s on 2 cores), file size vs parameters × 4 bytes,
//   ONNX Runtime (onnxruntime-node, CPU) latency at batch 1 and throughput at batch 32, against libtorch eager through
//   our addon (Engine.predict) in the same run, with the ratio. The reference service quoted 20–30 ms CPU latency.
//   npx tsx benchmarks/onnx/export.ts [--quick] [--variants atto,tiny,large] [--threads N] [--device cuda]
// With --device cuda (a GPU machine; benchmarks/cuda_check.sh runs it): libtorch runs on the GPU, ONNX Runtime on its
// CPU provider, and a parity column gives max |Δ| between the two on the batch-32 input.
// Needs the built addon (npm run build:native, or HEIMDALL_TORCH_ADDON=<path>).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { native } from '../../lib/native.js';
import { exportOnnx } from '../../lib/onnx/export.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};
const quick = process.argv.includes('--quick');
// Threads: the engine's default, as a user gets it (--threads N sets it); ONNX Runtime gets the same count.
const threadsArg = arg('--threads', '');
const device = arg('--device', 'cpu');
const gpu = device !== 'cpu';
const withParity = gpu || process.argv.includes('--parity');  // --parity: the column on CPU too
const variants = arg('--variants', quick ? 'atto,tiny' : 'atto,femto,pico,nano,tiny,small,base,large')
  .split(',').map((v) => (v.startsWith('convnext_') ? v : `convnext_${v}`));
const SHAPE = [3, 128, 32];

const addon = native() as any;
if (threadsArg) addon.setNumThreads(Number(threadsArg));
const threads: number = addon.torchInfo().threads;

function randomInput(batch: number): Float32Array {
  const a = new Float32Array(batch * SHAPE[0] * SHAPE[1] * SHAPE[2]);
  for (let i = 0; i < a.length; i++) a[i] = Math.random() * 2 - 1;
  return a;
}

/** Median seconds of `fn`, after one warm-up, over `runs` runs or until `budgetS` is spent (at least 3). */
async function time(fn: () => Promise<unknown>, runs: number, budgetS: number): Promise<number> {
  await fn();
  const out: number[] = [];
  const start = performance.now();
  while (out.length < runs && (out.length < 3 || (performance.now() - start) / 1000 < budgetS)) {
    const t0 = performance.now();
    await fn();
    out.push((performance.now() - t0) / 1000);
  }
  out.sort((a, b) => a - b);
  return out[Math.floor(out.length / 2)];
}

interface Row {
  variant: string;
  params: number;
  exportS: number;
  fileMB: number;
  sizeRatio: number;
  ortB1ms: number;
  torchB1ms: number;
  ortB32: number;
  torchB32: number;
  parity: number | null;
}

const dir = mkdtempSync(join(tmpdir(), 'heimdall-onnx-bench-'));
const rows: Row[] = [];
try {
  for (const variant of variants) {
    const model = new addon.Model({ variant, head: 'localization', layerScaleInit: 0.5 });
    const params = model.numParameters() as number;
    const path = join(dir, `${variant}.onnx`);
    const t0 = performance.now();
    const report = await exportOnnx(model, path, { inputShape: SHAPE as [number, number, number], validate: false });
    const exportS = (performance.now() - t0) / 1000;
    const bytes = statSync(path).size + (report.dataPath ? statSync(report.dataPath).size : 0);

    const session = await ort.InferenceSession.create(path, { intraOpNumThreads: threads, interOpNumThreads: 1 });
    const engine = new addon.Engine(model, { device, threads });
    const runs = quick ? 5 : 20;
    const b1 = randomInput(1);
    const b32 = randomInput(32);
    const feeds1 = { [report.inputName]: new ort.Tensor('float32', b1, [1, ...SHAPE]) };
    const feeds32 = { [report.inputName]: new ort.Tensor('float32', b32, [32, ...SHAPE]) };
    const ortB1 = await time(() => session.run(feeds1), runs, 10);
    const torchB1 = await time(() => engine.predict(b1, { shape: [1, ...SHAPE], batchSize: 1 }), runs, 10);
    const ortB32 = await time(() => session.run(feeds32), quick ? 2 : 5, 20);
    const torchB32 = await time(() => engine.predict(b32, { shape: [32, ...SHAPE], batchSize: 32 }), quick ? 2 : 5, 20);
    let parity: number | null = null;
    if (withParity) {  // ORT on CPU vs libtorch on the device, same weights and input
      const o = await session.run(feeds32);
      const t = await engine.predict(b32, { shape: [32, ...SHAPE], batchSize: 32 });
      parity = 0;
      for (const name of Object.keys(t)) {
        if (!o[name]) throw new Error(`ONNX Runtime gave no output '${name}' (outputs: ${Object.keys(o).join(', ')})`);
        const a = o[name]!.data as Float32Array, b = t[name].data as Float32Array;
        for (let i = 0; i < a.length; i++) parity = Math.max(parity, Math.abs(a[i]! - b[i]!));
      }
    }
    await session.release();
    rmSync(path, { force: true });
    if (report.dataPath) rmSync(report.dataPath, { force: true });
    const row: Row = {
      variant, params, exportS, fileMB: bytes / 1e6, sizeRatio: bytes / (params * 4),
      ortB1ms: ortB1 * 1000, torchB1ms: torchB1 * 1000, ortB32: 32 / ortB32, torchB32: 32 / torchB32, parity,
    };
    rows.push(row);
    console.error(`${variant}: export ${exportS.toFixed(2)} s, ORT b1 ${row.ortB1ms.toFixed(1)} ms, libtorch b1 ${row.torchB1ms.toFixed(1)} ms`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const header = ['variant', 'params', 'export s', 'file MB', 'file/(params×4)', 'ORT b1 ms', `libtorch${gpu ? ` ${device}` : ''} b1 ms`, 'ratio',
  'ORT b32 img/s', `libtorch${gpu ? ` ${device}` : ''} b32 img/s`, 'ratio', ...(withParity ? ['max |Δ| ORT cpu vs libtorch'] : [])];
const table = rows.map((r) => [
  r.variant, `${(r.params / 1e6).toFixed(1)}M`, r.exportS.toFixed(2), r.fileMB.toFixed(1), r.sizeRatio.toFixed(4),
  r.ortB1ms.toFixed(1), r.torchB1ms.toFixed(1), `${(r.torchB1ms / r.ortB1ms).toFixed(2)}×`,
  r.ortB32.toFixed(1), r.torchB32.toFixed(1), `${(r.ortB32 / r.torchB32).toFixed(2)}×`,
  ...(withParity ? [r.parity!.toExponential(2)] : []),
]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
console.log(`ONNX export + inference, localization head, input 3×128×32, ORT on CPU, libtorch on ${device}, ${threads} threads, onnxruntime-node ${ort.env.versions?.common ?? ''}`);
console.log(line(header));
console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const r of table) console.log(line(r));
console.log('ratio = libtorch time / ORT time (> 1: ONNX Runtime faster). Reference service: ONNX CPU latency 20–30 ms.');
const large = rows.find((r) => r.variant === 'convnext_large');
if (large) console.log(`convnext_large export ${large.exportS.toFixed(2)} s (target < 20 s on 2 cores): ${large.exportS < 20 ? 'met' : 'MISSED'}`);
