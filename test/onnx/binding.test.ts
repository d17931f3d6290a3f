// exportOnnx() through the Node addon (native/napi/onnx_binding.cc + lib/onnx/export.ts): from a live Model, from a
// weights file and from a training checkpoint, validated in onnxruntime-node against libtorch, and checked again by
// Python (onnx.checker full check, ONNX Runtime, timm). Needs the built addon: `npm run build:native`
// (or HEIMDALL_TORCH_ADDON=<path to heimdall_torch.node>).
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { exportOnnx, formatOnnxReport, OnnxExportError } from '../../lib/onnx/export.js';
import { Case, checkReference, makeReference, MAX_ABS, MEAN_ABS, ROOT, tempDir } from './helpers.js';

const ADDON = process.env.HEIMDALL_TORCH_ADDON ?? join(ROOT, 'build/Release/heimdall_torch.node');
let addon: any;

beforeAll(() => {
  if (!existsSync(ADDON)) throw new Error(`the native addon is not built at ${ADDON}: run \`npm run build:native\` first`);
  addon = native();  // the same loader exportOnnx() uses (HEIMDALL_TORCH_ADDON, else build/Release)
  expect(typeof addon.exportOnnx).toBe('function');
});

async function rejection(p: Promise<unknown>): Promise<any> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

describe('exportOnnx through the addon', () => {
  it('exports a live Model (atto, localization, layer scale 0.5) and validates it in onnxruntime-node', async () => {
    const model = new addon.Model({ variant: 'convnext_atto', head: 'localization', layerScaleInit: 0.5, seed: 7 });
    const dir = tempDir();
    const out = join(dir, 'live.onnx');
    const report = await exportOnnx(model, out, {
      inputShape: [3, 128, 32],
      metadata: { 'heimdall.normalization': '{"mean":0,"std":1}' },
      validate: { batchSizes: [1, 3, 8] },
    });
    console.log(formatOnnxReport(report));
    expect(report.inputName).toBe('mel_spectrogram');
    expect(report.outputNames).toEqual(['positions', 'uncertainties']);
    expect(report.inputShape).toEqual([-1, 3, 128, 32]);
    expect(report.dataPath).toBeNull();
    expect(report.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(report.metadata['heimdall.normalization']).toBe('{"mean":0,"std":1}');
    expect(report.metadata['heimdall.heimdall_torch_version']).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
    const v = report.validation!;
    expect(v.passed).toBe(true);
    expect(v.batches.map((b) => b.shape[0])).toEqual([1, 3, 8]);
    expect(v.maxAbs).toBeLessThanOrEqual(MAX_ABS);
    expect(v.meanAbs).toBeLessThanOrEqual(MEAN_ABS);
    // The model still trains afterwards: export must not leave it in eval mode or locked.
    expect(model.numParameters()).toBeGreaterThan(3e6);
  });

  it('exports a weights file written by Python (tiny, classification) and agrees with timm too', async () => {
    const c: Case = { variant: 'convnext_tiny', head: 'classification', outputs: 6, height: 64, width: 64, batches: [1, 2], seed: 11 };
    const dir = tempDir();
    const files = await makeReference(dir, c);
    const out = join(dir, 'tiny.onnx');
    const report = await exportOnnx(files.weights, out, { inputShape: [3, 64, 64], validate: { batchSizes: [1, 2] } });
    expect(report.variant).toBe('convnext_tiny');  // from the file's metadata
    expect(report.head).toBe('classification');
    expect(report.outputNames).toEqual(['logits']);
    expect(report.validation!.passed).toBe(true);
    const check = await checkReference(c, { onnx: out, weights: files.weights, inputs: files.inputs });
    for (const b of check.batches) {
      expect(b.outputs.logits.ort_vs_torch.max).toBeLessThanOrEqual(MAX_ABS);
      expect(b.outputs.logits.ort_vs_torch.mean).toBeLessThanOrEqual(MEAN_ABS);
    }
  }, 300_000);

  it('exports a ConvNeXt V2 weights file written by Python (nano, localization): onnxruntime-node and timm agree', async () => {
    const c: Case = { variant: 'convnextv2_nano', head: 'localization', height: 128, width: 32, batches: [1, 3], seed: 12 };
    const dir = tempDir();
    const files = await makeReference(dir, c);
    const out = join(dir, 'v2.onnx');
    const report = await exportOnnx(files.weights, out, { inputShape: [3, 128, 32], validate: { batchSizes: [1, 3] } });
    expect(report.variant).toBe('convnextv2_nano');
    expect(report.validation!.passed).toBe(true);
    console.log(`convnextv2_nano via the addon: max |Δ| ${report.validation!.maxAbs.toExponential(2)}, mean |Δ| ${report.validation!.meanAbs.toExponential(2)}`);
    const check = await checkReference(c, { onnx: out, weights: files.weights, inputs: files.inputs });
    for (const b of check.batches) for (const o of Object.values(b.outputs)) {
      expect(o.ort_vs_torch.max).toBeLessThanOrEqual(MAX_ABS);
      expect(o.ort_vs_torch.mean).toBeLessThanOrEqual(MEAN_ABS);
    }
  }, 300_000);

  it('exports a training checkpoint (optimizer and RNG state skipped), with external data when asked', async () => {
    const model = new addon.Model({ variant: 'convnext_atto', head: 'regression', outputs: 3, layerScaleInit: 0.5 });
    const engine = new addon.Engine(model, { device: 'cpu' });
    const dir = tempDir();
    const ckpt = join(dir, 'last.ckpt');
    await engine.saveCheckpoint(ckpt, '{}');
    const out = join(dir, 'ckpt.onnx');
    const report = await exportOnnx(ckpt, out, { externalDataThreshold: 0, inputShape: [3, 64, 32], validate: { batchSizes: [2, 5] } });
    expect(report.head).toBe('regression');
    expect(report.outputNames).toEqual(['outputs']);
    expect(report.dataPath).toBe(`${out}.data`);
    expect(report.externalTensors).toBeGreaterThan(50);
    expect(report.validation!.passed).toBe(true);
  });

  it('every variant atto … large: ONNX Runtime matches libtorch (random weights, layer scale 0.5, batches 1 and 3)', async () => {
    const dir = tempDir();
    const lines: string[] = [];
    for (const variant of ['atto', 'femto', 'pico', 'nano', 'tiny', 'small', 'base', 'large']) {
      const model = new addon.Model({ variant, head: 'localization', layerScaleInit: 0.5, seed: 3 });
      const out = join(dir, `${variant}.onnx`);
      const r = await exportOnnx(model, out, { inputShape: [3, 64, 32], validate: { batchSizes: [1, 3] } });
      const v = r.validation!;
      lines.push(`${variant}: ${r.parameters} weights, ${(r.modelBytes / 1e6).toFixed(1)} MB, export ${r.exportSeconds.toFixed(2)} s, ` +
        `max |Δ| ${v.maxAbs.toExponential(2)}, mean |Δ| ${v.meanAbs.toExponential(2)}`);
      expect(v.passed, lines[lines.length - 1]).toBe(true);
      expect(r.modelBytes).toBeGreaterThanOrEqual(r.parameters * 4);
      expect(r.modelBytes).toBeLessThan(r.parameters * 4 * 1.01 + 1e6);
      rmSync(out);
    }
    console.log(lines.join('\n'));
  }, 900_000);

  it('bad input: another variant, a truncated file, bad options → one clear error with a code', async () => {
    const model = new addon.Model({ variant: 'convnext_atto', head: 'localization' });
    const dir = tempDir();
    const weights = join(dir, 'atto.safetensors');
    await model.saveWeights(weights);

    let e = await rejection(exportOnnx(weights, join(dir, 'a.onnx'), { variant: 'convnext_pico', validate: false }));
    expect(e.code).toBe('HEIMDALL_WEIGHTS_MISMATCH');
    expect(e.message).toContain(weights);
    expect(e.message).toContain('stem.0.weight');

    const truncated = join(dir, 'truncated.safetensors');
    const bytes = readFileSync(weights);
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 1000));
    e = await rejection(exportOnnx(truncated, join(dir, 'b.onnx')));
    expect(e.code).toBe('HEIMDALL_BAD_FILE');
    expect(e.message).toContain(truncated);

    e = await rejection(exportOnnx(model, join(dir, 'c.onnx'), { opset: 12 } as any));
    expect(e).toBeInstanceOf(OnnxExportError);
    expect(e.code).toBe('HEIMDALL_INVALID_ARGUMENT');
    expect(e.message).toContain('opset');

    e = await rejection(exportOnnx(model, join(dir, 'd.onnx'), { geluOp: true }));
    expect(e.code).toBe('HEIMDALL_INVALID_ARGUMENT');
    expect(e.message).toContain('opset ≥ 20');

    e = await rejection(exportOnnx({}, join(dir, 'e.onnx')));
    expect(e.code).toBe('HEIMDALL_INVALID_ARGUMENT');
    for (const f of ['a', 'b', 'c', 'd', 'e']) expect(existsSync(join(dir, `${f}.onnx`))).toBe(false);
  });
});
