// The native ONNX exporter (native/onnx), through the export_onnx developer tool, checked by references that share
// none of our code: the ONNX project's checker (full check), ONNX Runtime (Python), timm's ConvNeXt + a PyTorch
// rewrite of our localization head, and libtorch (our Network) — all on the same random, non-trivial weights.
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  buildTool, Case, checkReference, CheckReport, makeReference, MAX_ABS, MEAN_ABS, run, runJson, tempDir,
} from './helpers.js';

// The machine may be shared and busy (each case starts Python with torch twice): generous timeouts.
const SLOW = 600_000;
let tool = '';
beforeAll(async () => {
  tool = await buildTool();
}, 30 * 60_000);

interface ExportReport {
  path: string;
  dataPath: string;
  modelBytes: number;
  dataBytes: number;
  opset: number;
  irVersion: number;
  parameters: number;
  nodes: number;
  initializers: number;
  externalTensors: number;
  inputName: string;
  outputNames: string[];
  seconds: number;
  metadata: Record<string, string>;
  referenceOut?: string;
}

async function exportCase(c: Case, extra: string[] = [], fixedShape = true) {
  const dir = tempDir();
  const files = await makeReference(dir, c);
  const onnx = join(dir, 'model.onnx');
  const libtorch = join(dir, 'libtorch.safetensors');
  const args = ['--weights', files.weights, '--out', onnx, '--reference-in', files.inputs, '--reference-out', libtorch,
    '--heimdall-version', '0.0.0-test', ...extra];
  if (fixedShape) args.push('--height', String(c.height), '--width', String(c.width));
  const report = await runJson<ExportReport>(tool, args);
  return { dir, onnx, libtorch, report, ...files };
}

function expectParity(check: CheckReport, c: Case, outputs: string[], withLibtorch = true) {
  expect(check.checker).toBe('ok');
  expect(check.batches.map((b) => b.shape[0]).sort((a, b) => a - b)).toEqual([...c.batches].sort((a, b) => a - b));
  for (const batch of check.batches) {
    expect(Object.keys(batch.outputs).sort()).toEqual([...outputs].sort());
    for (const [name, o] of Object.entries(batch.outputs)) {
      const where = `${c.variant}/${c.head} ${batch.input} ${name}`;
      expect(o.shape, where).toEqual([batch.shape[0], c.head === 'localization' ? 2 : c.outputs ?? 2]);
      expect(o.ref_absmax, `${where}: the reference output is not trivial`).toBeGreaterThan(1e-2);
      expect(o.ort_vs_torch.max, where).toBeLessThanOrEqual(MAX_ABS);
      expect(o.ort_vs_torch.mean, where).toBeLessThanOrEqual(MEAN_ABS);
      if (withLibtorch) {
        expect(o.ort_vs_libtorch!.max, where).toBeLessThanOrEqual(MAX_ABS);
        expect(o.ort_vs_libtorch!.mean, where).toBeLessThanOrEqual(MEAN_ABS);
        expect(o.libtorch_vs_torch!.max, where).toBeLessThanOrEqual(MAX_ABS);
      }
    }
  }
}

describe('ONNX export: parity with timm, libtorch and ONNX Runtime', () => {
  it('convnext_atto localization on 3×128×32 Heimdall inputs, batches 1, 3, 8 (opset 17, Erf GELU)', async () => {
    const c: Case = { variant: 'convnext_atto', head: 'localization', height: 128, width: 32, batches: [1, 3, 8] };
    const norm = JSON.stringify({ mean: -40.5, std: 12.25 });
    const e = await exportCase(c, ['--metadata', `heimdall.normalization=${norm}`]);
    expect(e.report.inputName).toBe('mel_spectrogram');
    expect(e.report.outputNames).toEqual(['positions', 'uncertainties']);
    const check = await checkReference(c, e);
    expectParity(check, c, ['positions', 'uncertainties']);

    expect(check.opsets).toEqual({ 'ai.onnx': 17 });
    expect(check.ir_version).toBe(8);
    expect(check.inputs).toEqual([{ name: 'mel_spectrogram', shape: ['batch', 3, 128, 32] }]);
    expect(check.outputs).toEqual([{ name: 'positions', shape: ['batch', 2] }, { name: 'uncertainties', shape: ['batch', 2] }]);
    expect(check.op_types).toContain('LayerNormalization');
    expect(check.op_types).toContain('Erf');
    expect(check.op_types).toContain('BatchNormalization');
    expect(check.op_types).not.toContain('Gelu');
    expect(check.op_types).not.toContain('Dropout');
    expect(check.op_types).not.toContain('MatMul');  // atto's MLP is 1×1 Conv
    expect(check.metadata).toMatchObject({
      'heimdall.variant': 'convnext_atto',
      'heimdall.head': 'localization',
      'heimdall.input_name': 'mel_spectrogram',
      'heimdall.input_shape': '[3, 128, 32]',
      'heimdall.output_names': 'positions,uncertainties',
      'heimdall.heimdall_torch_version': '0.0.0-test',
      'heimdall.sigma_min': '0.01',
      'heimdall.sigma_max': '1',
      'heimdall.normalization': norm,  // given by the caller
    });
    expect(check.metadata['heimdall.libtorch_version']).toMatch(/^\d+\.\d+\.\d+/);
    expect(check.external_initializers).toBe(0);
    expect(e.report.dataPath).toBe('');
    // nothing left behind but the files asked for
    expect(readdirSync(e.dir).sort()).toEqual(['inputs.safetensors', 'libtorch.safetensors', 'model.onnx', 'weights.safetensors']);
  }, SLOW);

  it('convnext_atto classification on 3×224×224 images, batches 1, 2, 5', async () => {
    const c: Case = { variant: 'convnext_atto', head: 'classification', outputs: 10, height: 224, width: 224, batches: [1, 2, 5], seed: 1 };
    const e = await exportCase(c);
    expect(e.report.inputName).toBe('input');
    const check = await checkReference(c, e);
    expectParity(check, c, ['logits']);
    expect(check.inputs).toEqual([{ name: 'input', shape: ['batch', 3, 224, 224] }]);
    expect(check.outputs).toEqual([{ name: 'logits', shape: ['batch', 10] }]);
  }, SLOW);

  it('convnext_tiny localization on 3×128×32, batches 1, 4 (NHWC MLP as MatMul + Add)', async () => {
    const c: Case = { variant: 'convnext_tiny', head: 'localization', height: 128, width: 32, batches: [1, 4], seed: 2 };
    const e = await exportCase(c);
    const check = await checkReference(c, e);
    expectParity(check, c, ['positions', 'uncertainties']);
    expect(check.op_types).toContain('MatMul');
    expect(check.metadata['heimdall.variant']).toBe('convnext_tiny');
  }, SLOW);

  it('convnext_tiny classification on 3×224×224, batches 1, 3', async () => {
    const c: Case = { variant: 'convnext_tiny', head: 'classification', outputs: 7, height: 224, width: 224, batches: [1, 3], seed: 3 };
    const e = await exportCase(c);
    const check = await checkReference(c, e);
    expectParity(check, c, ['logits']);
  }, SLOW);

  it('opset 20 with the Gelu op, a regression head and symbolic height/width (one file, two input sizes)', async () => {
    const c: Case = { variant: 'convnext_atto', head: 'regression', outputs: 3, inChans: 1, height: 64, width: 96, batches: [2, 3], seed: 4 };
    const e = await exportCase(c, ['--opset', '20', '--gelu-op'], /*fixedShape=*/ false);
    const check = await checkReference(c, e);
    expectParity(check, c, ['outputs']);
    expect(check.opsets).toEqual({ 'ai.onnx': 20 });
    expect(check.ir_version).toBe(9);
    expect(check.op_types).toContain('Gelu');
    expect(check.op_types).not.toContain('Erf');
    expect(check.inputs).toEqual([{ name: 'input', shape: ['batch', 1, 'height', 'width'] }]);
    expect(check.metadata['heimdall.input_shape']).toBe('[1, height, width]');

    // The same file on another input size: 32×48
    const c2: Case = { ...c, height: 32, width: 48, batches: [1] };
    const dir2 = tempDir();
    const files2 = await makeReference(dir2, c2);
    const check2 = await checkReference(c2, { onnx: e.onnx, weights: e.weights, inputs: files2.inputs });
    expectParity(check2, c2, ['outputs'], false);
  }, SLOW);
});

describe('ONNX export: ConvNeXt V2 (GRN, no layer scale), written by its own layers', () => {
  function worst(check: CheckReport) {
    let max = 0, mean = 0;
    for (const b of check.batches) for (const o of Object.values(b.outputs)) {
      max = Math.max(max, o.ort_vs_torch.max, o.ort_vs_libtorch?.max ?? 0);
      mean = Math.max(mean, o.ort_vs_torch.mean, o.ort_vs_libtorch?.mean ?? 0);
    }
    return { max, mean };
  }

  it('convnextv2_atto localization on 3×128×32, batches 1, 3 (opset 17: 1×1 Conv MLP, GRN over NCHW with ReduceL2)', async () => {
    const c: Case = { variant: 'convnextv2_atto', head: 'localization', height: 128, width: 32, batches: [1, 3], seed: 7 };
    const e = await exportCase(c);
    const check = await checkReference(c, e);
    expectParity(check, c, ['positions', 'uncertainties']);
    console.log(`ONNX ${c.variant}: ${JSON.stringify(worst(check))}`);
    expect(check.op_types).toContain('ReduceL2');
    expect(check.op_types).not.toContain('MatMul');
    expect(check.metadata).toMatchObject({ 'heimdall.variant': 'convnextv2_atto', 'heimdall.family': 'convnextv2' });
  }, SLOW);

  it('convnextv2_tiny classification on 3×96×96, batches 1, 2 (opset 18: NHWC MatMul MLP, GRN over NHWC, axes as inputs)', async () => {
    const c: Case = { variant: 'convnextv2_tiny', head: 'classification', outputs: 6, height: 96, width: 96, batches: [1, 2], seed: 8 };
    const e = await exportCase(c, ['--opset', '18']);
    const check = await checkReference(c, e);
    expectParity(check, c, ['logits']);
    console.log(`ONNX ${c.variant}: ${JSON.stringify(worst(check))}`);
    expect(check.opsets).toEqual({ 'ai.onnx': 18 });
    expect(check.op_types).toContain('ReduceL2');
    expect(check.op_types).toContain('MatMul');
  }, SLOW);
});

describe('ONNX export: external data for models over 2 GB', () => {
  it('writes weights to a relative side file when over the threshold; checker and ONNX Runtime load it after a move', async () => {
    const c: Case = { variant: 'convnext_atto', head: 'classification', outputs: 5, height: 64, width: 64, batches: [1, 4], seed: 6 };
    const e = await exportCase(c, ['--external-data-threshold', '0']);
    expect(e.report.dataPath).toBe(`${e.onnx}.data`);
    expect(e.report.externalTensors).toBeGreaterThan(50);
    expect(existsSync(e.report.dataPath)).toBe(true);
    // The weights are in the side file, the graph stays small.
    expect(e.report.modelBytes).toBeLessThan(200_000);
    expect(e.report.dataBytes).toBeGreaterThanOrEqual(e.report.parameters * 4 * 0.95);

    // Move both files elsewhere: the location is relative, so it still loads.
    const moved = tempDir();
    copyFileSync(e.onnx, join(moved, 'model.onnx'));
    copyFileSync(e.report.dataPath, join(moved, 'model.onnx.data'));
    const check = await checkReference(c, { onnx: join(moved, 'model.onnx'), weights: e.weights, inputs: e.inputs, libtorch: e.libtorch });
    expect(check.external_initializers).toBe(e.report.externalTensors);
    expectParity(check, c, ['logits']);
  }, SLOW);
});

describe('ONNX export: bad input gets one clear error', () => {
  let atto: { dir: string; weights: string; inputs: string };
  beforeAll(async () => {
    const dir = tempDir();
    atto = { dir, ...await makeReference(dir, { variant: 'convnext_atto', head: 'localization', height: 32, width: 32, batches: [1] }) };
  }, SLOW);

  it('weights of another variant name the first tensor that does not fit', async () => {
    const out = join(atto.dir, 'wrong.onnx');
    const r = await run(tool, ['--weights', atto.weights, '--variant', 'convnext_femto', '--out', out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('HEIMDALL_WEIGHTS_MISMATCH');
    expect(r.stderr).toMatch(/"stem\.0\.weight" has shape \[40, 3, 4, 4\] but a convnext_femto network/);
    expect(existsSync(out)).toBe(false);
  }, SLOW);

  it('weights of another head say which tensor is missing or left over', async () => {
    const out = join(atto.dir, 'head.onnx');
    const r = await run(tool, ['--weights', atto.weights, '--head', 'classification', '--outputs', '4', '--out', out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('HEIMDALL_WEIGHTS_MISMATCH');
    expect(r.stderr).toContain('head.fc.weight');
    expect(existsSync(out)).toBe(false);
  }, SLOW);

  it('a truncated weights file is reported with its path', async () => {
    const truncated = join(atto.dir, 'truncated.safetensors');
    const bytes = readFileSync(atto.weights);
    writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const r = await run(tool, ['--weights', truncated, '--out', join(atto.dir, 'x.onnx')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('HEIMDALL_BAD_FILE');
    expect(r.stderr).toContain(truncated);
  }, SLOW);

  it('options: the Gelu op before opset 20, an unknown variant, an input smaller than 32', async () => {
    const base = ['--weights', atto.weights, '--out', join(atto.dir, 'o.onnx')];
    let r = await run(tool, [...base, '--gelu-op']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/HEIMDALL_INVALID_ARGUMENT.*Gelu op needs opset ≥ 20/);
    r = await run(tool, [...base, '--opset', '13']);
    expect(r.stderr).toMatch(/opset must be between 17 and 23/);
    r = await run(tool, [...base, '--variant', 'convnext_huge']);
    expect(r.stderr).toMatch(/HEIMDALL_UNKNOWN_VARIANT.*convnext_atto/);
    r = await run(tool, [...base, '--height', '16', '--width', '32']);
    expect(r.stderr).toMatch(/HEIMDALL_SHAPE_MISMATCH.*≥ 32/);
    expect(existsSync(join(atto.dir, 'o.onnx'))).toBe(false);
  }, SLOW);
});
