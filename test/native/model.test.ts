import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConvNeXt } from '../../lib/model.js';
import { native, type NativeModel } from '../../lib/native.js';
import { python } from '../helpers/python.js';
import { tempDir } from '../helpers/tmp.js';
import { blobDataset } from './fixtures.js';

const addon = native();

// timm with random, non-trivial weights (layer scale γ ~ U(0.2, 0.8) instead of 1e-6, so every block
// matters), saved as safetensors together with a random input and timm's output for it.
const TIMM_REFERENCE = `
import sys, json, torch, timm, numpy as np
from safetensors.torch import save_file
variant, classes, h, w, batch, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
torch.manual_seed(0)
m = timm.create_model(variant, num_classes=classes, pretrained=False).eval()
with torch.no_grad():
    for name, p in m.named_parameters():
        if name.endswith('gamma'): p.uniform_(0.2, 0.8)
        elif '.grn.' in name and name.endswith('weight'): p.normal_(0, 0.5)  # ConvNeXt V2's GRN (zero in timm's init)
        elif 'norm' in name and name.endswith('weight'): p.uniform_(0.5, 1.5)
        elif name.endswith('bias'): p.normal_(0, 0.05)
sd = {k: v.contiguous() for k, v in m.state_dict().items()}
save_file(sd, out + '/weights.safetensors')
x = torch.randn(batch, 3, h, w)
with torch.no_grad(): y = m(x)
x.numpy().astype('<f4').tofile(out + '/x.bin')
y.numpy().astype('<f4').tofile(out + '/y.bin')
print(json.dumps({k: list(v.shape) for k, v in sd.items()}))
`;

function floats(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

const V1 = ['convnext_atto', 'convnext_femto', 'convnext_pico', 'convnext_nano', 'convnext_tiny',
  'convnext_small', 'convnext_base', 'convnext_large', 'convnext_xlarge'];
const V2 = ['convnextv2_atto', 'convnextv2_femto', 'convnextv2_pico', 'convnextv2_nano', 'convnextv2_tiny',
  'convnextv2_small', 'convnextv2_base', 'convnextv2_large', 'convnextv2_huge'];

describe('model registry', () => {
  it('lists the nine variants of each family: ConvNeXt V1, then V2, with family, depths and dims', () => {
    expect(addon.variants.map((v) => v.name)).toEqual([...V1, ...V2]);
    expect(ConvNeXt.variants()).toEqual([...V1, ...V2]);
    expect(addon.variants.find((v) => v.name === 'convnext_large')).toEqual({
      name: 'convnext_large', family: 'convnext', depths: [3, 3, 27, 3], dims: [192, 384, 768, 1536],
    });
    expect(addon.variants.find((v) => v.name === 'convnextv2_huge')).toEqual({
      name: 'convnextv2_huge', family: 'convnextv2', depths: [3, 3, 27, 3], dims: [352, 704, 1408, 2816],
    });
    expect(addon.variants.filter((v) => v.family === 'convnextv2').map((v) => v.name)).toEqual(V2);
  });

  it('resolves V2 names in any case, bare sizes stay V1, and the model says its family, variant and head', () => {
    expect(new addon.Model({ variant: 'CONVNEXTV2_ATTO' }).variant).toBe('convnextv2_atto');
    expect(new addon.Model({ variant: 'tiny', head: 'regression' }).family).toBe('convnext');
    expect(['CONVNEXTV2_ATTO', 'tiny', 'Convnext_Large', 'convnext_huge'].map((n) => ConvNeXt.resolveVariant(n)))
      .toEqual(['convnextv2_atto', 'convnext_tiny', 'convnext_large', undefined]);
    const m = ConvNeXt.classification('ConvNeXtV2_Femto', 5);
    expect([m.family, m.variant, m.head]).toEqual(['convnextv2', 'convnextv2_femto', 'classification']);
    expect(m.hyperparameters()).toMatchObject({ family: 'convnextv2', variant: 'convnextv2_femto', head: 'classification' });
    const v1 = ConvNeXt.localization('convnext_atto');
    expect([v1.family, v1.variant, v1.head]).toEqual(['convnext', 'convnext_atto', 'localization']);
    // V2 has no layer scale: no gamma; GRN in every block's MLP.
    const keys = Object.keys(m.native.stateDictShapes());
    expect(keys.some((k) => k.endsWith('.gamma'))).toBe(false);
    expect(keys).toContain('stages.0.blocks.0.mlp.grn.weight');
  });

  it('an unknown variant names every valid one, of both families', () => {
    for (const bad of ['convnext_huge', 'convnextv2_xlarge', 'v3_atto']) {
      let err: unknown;
      try {
        new addon.Model({ variant: bad });
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: 'HEIMDALL_UNKNOWN_VARIANT' });
      const message = (err as Error).message;
      expect(message).toContain(`"${bad}"`);
      for (const name of [...V1, ...V2]) expect(message).toContain(name);
    }
  });
});

describe('ConvNeXt family', () => {

  it.each([
    ['atto', 3.7e6],
    ['tiny', 28.6e6],
  ])('convnext_%s has the published parameter count', (variant, count) => {
    const m = new addon.Model({ variant, head: 'classification', outputs: 1000 });
    expect(Math.abs(m.numParameters() - count) / count).toBeLessThan(0.02);
  });

  it('accepts any case and an unknown variant lists the valid ones', () => {
    expect(new addon.Model({ variant: 'CONVNEXT_FEMTO' }).variant).toBe('convnext_femto');
    expect(() => new addon.Model({ variant: 'convnext_huge' })).toThrow(
      expect.objectContaining({
        code: 'HEIMDALL_UNKNOWN_VARIANT',
        message: expect.stringContaining('valid variants: convnext_atto, convnext_femto'),
      }),
    );
  });

  it('ConvNeXt.create builds off the JavaScript thread: the same weights as the sync factory, timers keep firing', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const small = await ConvNeXt.create({ variant: 'convnext_small', head: 'regression', outputs: 2, seed: 3 });
    clearInterval(timer);
    expect(small.variant).toBe('convnext_small');
    expect(ticks).toBeGreaterThanOrEqual(2);  // a sync build of convnext_small holds the loop for its whole ~0.5–1 s

    const viaCreate = await ConvNeXt.create({ variant: 'atto', seed: 11, headDropout: 0 });
    const viaSync = ConvNeXt.localization('atto', { seed: 11, headDropout: 0 });
    expect(viaCreate.head).toBe('localization');
    const x = new Float32Array(2 * 3 * 32 * 32).map((_, i) => Math.sin(i / 3));
    const pa = await new addon.Engine(viaCreate.native, { device: 'cpu' }).predict(x, { shape: [2, 3, 32, 32] });
    const pb = await new addon.Engine(viaSync.native, { device: 'cpu' }).predict(x, { shape: [2, 3, 32, 32] });
    expect(Array.from(pa.positions!.data)).toEqual(Array.from(pb.positions!.data));

    await expect(ConvNeXt.create({ variant: 'convnext_huge' })).rejects.toMatchObject({ code: 'HEIMDALL_UNKNOWN_VARIANT' });
    await expect(ConvNeXt.create({ variant: 'atto', pretrained: '/nonexistent/w.safetensors' })).rejects.toThrow(/nonexistent\/w\.safetensors/);
    expect(new addon.Model({ variant: 'atto' }).variant).toBe('convnext_atto');  // the sync constructor is unaffected
  });

  it('freezes the backbone: only the head stays trainable', () => {
    const m = new addon.Model({ variant: 'atto', head: 'localization', freezeBackbone: true });
    const trainable = m.numParameters(true);
    expect(trainable).toBeGreaterThan(0);
    expect(trainable).toBeLessThan(m.numParameters() / 5);
    m.setBackboneFrozen(false);
    expect(m.numParameters(true)).toBe(m.numParameters());
  });
});

describe.each([
  ['convnext_atto', 224, 224, 3],
  ['convnext_atto', 128, 32, 4],
  ['convnext_tiny', 224, 224, 2],
  ['convnextv2_atto', 224, 224, 3],
  ['convnextv2_atto', 128, 32, 4],
  ['convnextv2_tiny', 224, 224, 2],
])('timm parity: %s at %ix%i', (variant, h, w, batch) => {
  it('has exactly timm\'s state_dict names and shapes, and the same outputs within 1e-5', async () => {
    const dir = tempDir();
    const classes = 10;
    const shapes = JSON.parse(await python(TIMM_REFERENCE, [variant, String(classes), String(h), String(w), String(batch), dir])) as Record<string, number[]>;
    const model = new addon.Model({ variant, head: 'classification', outputs: classes });
    const ours = model.stateDictShapes();
    expect(Object.keys(ours).sort()).toEqual(Object.keys(shapes).sort());
    for (const [k, s] of Object.entries(shapes)) expect(ours[k], k).toEqual(s);

    const report = await model.loadWeights(join(dir, 'weights.safetensors'), { strict: true });
    expect(report.missing).toEqual([]);
    expect(report.loaded.length).toBe(Object.keys(shapes).length);
    const engine = new addon.Engine(model, { device: 'cpu' });
    const out = await engine.predict(floats(join(dir, 'x.bin')), { shape: [batch, 3, h, w], batchSize: batch });
    const expected = floats(join(dir, 'y.bin'));
    const got = out.logits!.data;
    expect(got.length).toBe(expected.length);
    let maxDiff = 0;
    for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i]! - expected[i]!));
    console.log(`timm parity ${variant} ${h}x${w}: max |Δ| ${maxDiff.toExponential(2)}`);
    expect(maxDiff).toBeLessThanOrEqual(1e-5);
  });
});

/** A fresh model of `a`'s variant (another seed) loads `path` strictly and predicts exactly what `a` predicts. */
async function expectReloadedTheSame(a: NativeModel, path: string): Promise<void> {
  const b = new addon.Model({ variant: a.variant, head: 'localization', seed: 6 });
  await b.loadWeights(path, { strict: true });
  const x = new Float32Array(2 * 3 * 32 * 32).map((_, i) => Math.cos(i));
  const pa = await new addon.Engine(a, { device: 'cpu' }).predict(x, { shape: [2, 3, 32, 32] });
  const pb = await new addon.Engine(b, { device: 'cpu' }).predict(x, { shape: [2, 3, 32, 32] });
  expect(Array.from(pb.positions!.data)).toEqual(Array.from(pa.positions!.data));
}

describe('weights files', () => {
  it('round-trips through safetensors and Python reads our file with timm names', async () => {
    const dir = tempDir();
    const a = new addon.Model({ variant: 'atto', head: 'localization', seed: 5 });
    const path = join(dir, 'atto.safetensors');
    await a.saveWeights(path);
    const keys = JSON.parse(
      await python(
        `import sys, json
from safetensors import safe_open
with safe_open(sys.argv[1], 'pt') as f: print(json.dumps({'keys': list(f.keys()), 'meta': f.metadata()}))`,
        [path],
      ),
    ) as { keys: string[]; meta: Record<string, string> };
    expect(keys.keys).toContain('stages.2.blocks.5.mlp.fc2.weight');
    expect(keys.keys).toContain('position_head.0.weight');
    expect(keys.meta['heimdall.variant']).toBe('convnext_atto');

    await expectReloadedTheSame(a, path);
  });

  it('ConvNeXt V2: round-trips through safetensors with timm names and the family in the metadata', async () => {
    const dir = tempDir();
    const a = new addon.Model({ variant: 'convnextv2_atto', head: 'localization', seed: 5 });
    const path = join(dir, 'v2.safetensors');
    await a.saveWeights(path);
    const file = JSON.parse(
      await python(
        `import sys, json, timm
from safetensors import safe_open
with safe_open(sys.argv[1], 'pt') as f: keys, meta = list(f.keys()), f.metadata()
timm_keys = list(timm.create_model('convnextv2_atto', pretrained=False, num_classes=0).state_dict().keys())
print(json.dumps({'keys': keys, 'meta': meta, 'timm': timm_keys}))`,
        [path],
      ),
    ) as { keys: string[]; meta: Record<string, string>; timm: string[] };
    expect(file.keys.filter((k) => !/^(position|uncertainty)_head\./.test(k)).sort()).toEqual([...file.timm].sort());
    expect(file.meta['heimdall.variant']).toBe('convnextv2_atto');
    expect(file.meta['heimdall.family']).toBe('convnextv2');

    await expectReloadedTheSame(a, path);
    // V1 weights do not fit V2 (no GRN, a gamma per block)
    const v1 = new addon.Model({ variant: 'convnext_atto', head: 'localization' });
    await expect(v1.loadWeights(path, { strict: true })).rejects.toMatchObject({ code: 'HEIMDALL_WEIGHTS_MISMATCH' });
  });

  it('loads a timm backbone as pretrained weights into a localization model, reporting the skipped head', async () => {
    const dir = tempDir();
    await python(TIMM_REFERENCE, ['convnext_atto', '1000', '32', '32', '1', dir]);
    const m = new addon.Model({ variant: 'atto', head: 'localization' });
    const report = await m.loadWeights(join(dir, 'weights.safetensors'));
    expect(report.unexpected).toEqual(['head.fc.bias', 'head.fc.weight']);
    expect(report.missing.some((k) => k.startsWith('position_head.'))).toBe(true);
    expect(report.loaded).toContain('stem.0.weight');
  });

  it('refuses weights of another variant and truncated files, naming the file', async () => {
    const dir = tempDir();
    const femto = new addon.Model({ variant: 'femto', head: 'localization' });
    const path = join(dir, 'femto.safetensors');
    await femto.saveWeights(path);
    const atto = new addon.Model({ variant: 'atto', head: 'localization' });
    await expect(atto.loadWeights(path)).rejects.toMatchObject({
      code: 'HEIMDALL_WEIGHTS_MISMATCH',
      message: expect.stringMatching(/do not fit the convnext_atto backbone.*stem\.0\.weight: file \[48, 3, 4, 4\] vs model \[40, 3, 4, 4\]/),
    });
    const whole = readFileSync(path);
    const cut = join(dir, 'cut.safetensors');
    writeFileSync(cut, whole.subarray(0, Math.floor(whole.length / 2)));
    await expect(femto.loadWeights(cut)).rejects.toMatchObject({
      code: 'HEIMDALL_BAD_FILE',
      message: expect.stringMatching(/cut\.safetensors is truncated/),
    });
    await expect(femto.loadWeights(join(dir, 'absent.safetensors'))).rejects.toMatchObject({ code: 'HEIMDALL_BAD_FILE' });
  });
});

describe('safetensors files from elsewhere', () => {
  // A header that claims tensors the data cannot hold must be refused before anything is allocated for them.
  function craft(path: string, tensors: Record<string, { shape: number[]; data_offsets: [number, number] }>, dataBytes: number): void {
    const header = Buffer.from(JSON.stringify(Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, { dtype: 'F32', ...v }]))));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(path, Buffer.concat([len, header, Buffer.alloc(dataBytes)]));
  }

  it('refuses overlapping byte ranges, impossible shapes and sizes beyond the file with one coded error', async () => {
    const dir = tempDir();
    const m = new addon.Model({ variant: 'atto', head: 'localization' });
    // 2000 tensors of 4 KiB each, all on the same 4 KiB of data: 8 MB of tensors from an 8 KB file.
    const overlap = join(dir, 'overlap.safetensors');
    craft(overlap, Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`t${i}`, { shape: [1024], data_offsets: [0, 4096] as [number, number] }])), 4096);
    await expect(m.loadWeights(overlap, { strict: false })).rejects.toMatchObject({ code: 'HEIMDALL_BAD_FILE', message: expect.stringMatching(/overlap/) });
    const huge = join(dir, 'huge.safetensors');
    craft(huge, { big: { shape: [1_000_000, 1_000_000], data_offsets: [0, 4e12] } }, 16);
    await expect(m.loadWeights(huge, { strict: false })).rejects.toMatchObject({ code: 'HEIMDALL_BAD_FILE', message: expect.stringMatching(/truncated/) });
    const overflow = join(dir, 'overflow.safetensors');
    craft(overflow, { big: { shape: [2 ** 52, 2 ** 52], data_offsets: [0, 0] } }, 16);
    await expect(m.loadWeights(overflow, { strict: false })).rejects.toMatchObject({ code: 'HEIMDALL_BAD_FILE', message: expect.stringMatching(/invalid shape/) });
  });
});

describe('torchInfo', () => {
  it('reports the libtorch it runs on', async () => {
    const info = addon.torchInfo();
    const pyVersion = (await python('import torch; print(torch.__version__.split("+")[0])')).trim();
    expect(info.libtorch).toBe(pyVersion);
    expect(info.threads).toBeGreaterThan(0);
    expect(info.cudaDevices[0]).toBe('cpu');
    expect(typeof info.cudaBuild).toBe('boolean');
  });
});

describe('ConvNeXt V2 trains through the native Engine', () => {
  it.each(['convnextv2_atto', 'convnextv2_tiny'])('%s: finite losses that fall over a few steps on blob data', async (variant) => {
    const model = new addon.Model({ variant, head: 'localization', seed: 7, headDropout: 0, dropPathRate: 0.1 });
    const engine = new addon.Engine(model, { device: 'cpu', seed: 1, optimizer: { name: 'adamw', lr: 2e-3 }, threads: 2 });
    const data = blobDataset(32, 4);
    const losses: number[] = [];
    for (let e = 0; e < 4; e++) await engine.trainEpoch(data, { batchSize: 16, maxEpochs: 4 }, (ev) => losses.push(ev.metrics.loss!));
    expect(losses.length).toBe(8);
    for (const l of losses) expect(Number.isFinite(l)).toBe(true);
    const first = (losses[0]! + losses[1]!) / 2, last = (losses[6]! + losses[7]!) / 2;
    expect(last).toBeLessThan(first);
  }, 300_000);
});

describe('localization head dropout', () => {
  // The first batch's training loss is computed before any update; with the whole set in one batch the
  // engine's shuffle only reorders it (same BatchNorm statistics). What is left to differ between two engine
  // seeds is the head's dropout masks.
  async function firstLoss(headDropout: number | [number, number] | undefined, engineSeed: number): Promise<number> {
    const model = new addon.Model({ variant: 'atto', head: 'localization', seed: 5, headDropout });
    const engine = new addon.Engine(model, { device: 'cpu', seed: engineSeed, optimizer: { name: 'adamw', lr: 1e-3 }, threads: 2 });
    const losses: number[] = [];
    await engine.trainEpoch(blobDataset(24, 3), { batchSize: 24, maxEpochs: 1 }, (e) => losses.push(e.metrics.loss!));
    return losses[0]!;
  }

  it('is the reference 0.3/0.2 by default, can be turned off, and is rejected outside [0, 1)', async () => {
    const [off1, off2] = [await firstLoss(0, 1), await firstLoss([0, 0], 2)];
    expect(Math.abs(off1 - off2)).toBeLessThan(1e-5 * Math.max(1, Math.abs(off1)));
    const [on1, on2] = [await firstLoss(undefined, 1), await firstLoss(undefined, 2)];
    expect(Math.abs(on1 - on2)).toBeGreaterThan(1e-3);
    for (const bad of [1, -0.1, [0.1], [0.1, 0.2, 0.3], 'x'] as unknown[]) {
      expect(() => new addon.Model({ variant: 'atto', head: 'localization', headDropout: bad as number })).toThrow(/headDropout/);
    }
  });
});
