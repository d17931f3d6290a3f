// The Heimdall data pipeline through the Node-API binding and its typed wrapper (lib/data/heimdall.ts):
// data sets as NativeDatasets, metadata, split, the on-disk round trip, errors with codes, feature
// extraction from typed arrays, and a short training run of the engine on the synthetic data.
// Needs the addon (build/Release/heimdall_torch.node, or HEIMDALL_TORCH_ADDON=<path>).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { computeFeatures, HeimdallDataModule } from '../../lib/data/heimdall.js';
import { loadNpy } from '../../lib/data/npy.js';
import { native } from '../../lib/native.js';
import { py, reference, tempDir } from './helpers';

describe('Heimdall data through the binding', () => {
  it('synthetic(): a NativeDataset of [7, 128, 32] inputs with its normalisation, features and receivers', () => {
    const m = HeimdallDataModule.synthetic({ samples: 20, seed: 1 });
    expect(m.size).toBe(20);
    expect(m.inputShape).toEqual([7, 128, 32]);
    expect(m.dataset.targetShape).toEqual([2]);
    expect(m.dataset.describe()).toBe('synthetic RF, 20 samples, seed 1, 7 receivers');
    expect(m.positionScale.latCenter).toBeCloseTo(44.9365, 9);
    expect(m.positionScale.lonCenter).toBeCloseTo(8.1805, 9);
    expect(m.positionScale.latScale).toBeCloseTo(1.0415, 9);
    expect(m.positionScale.lonScale).toBeCloseTo(1.4425, 9);
    expect(m.info.features).toMatchObject({ sampleRate: 50000, nFft: 2048, hop: 512, nMels: 128, frames: 32, melScale: 'htk', refDb: -80, scaleDb: 20 });
    expect(m.info.receivers.map((r) => r.name)).toContain('Milano-Baggio');
    expect(JSON.parse(m.info.metadataJson).normalization.lat_center).toBeCloseTo(44.9365, 9);
    const s = m.split(0);
    expect([s.train.size, s.val.size, s.test.size]).toEqual([15, 3, 2]);
    expect(Array.from(m.toDegrees([0, 0, 1, -1]))).toEqual([44.9365, 8.1805, 44.9365 + 1.0415, 8.1805 - 1.4425].map((v) => expect.closeTo(v, 9)));
    const big = HeimdallDataModule.synthetic({ samples: 100 }).split(3);
    expect([big.train.size, big.val.size, big.test.size]).toEqual([72, 18, 10]);
  });

  it('positions() of a data set and its splits, and the centroid baseline', () => {
    const m = HeimdallDataModule.synthetic({ samples: 50, seed: 4 });
    const all = m.positions();
    expect(all.length).toBe(100);
    const s = m.split(1);
    const native_ = native();
    const idx = native_.referenceSplit(50, 1);
    const test = m.positions(s.test);
    idx.test.forEach((i, k) => {
      expect(test[2 * k]).toBe(all[2 * i]);
      expect(test[2 * k + 1]).toBe(all[2 * i + 1]);
    });
    const b = m.centroidBaseline(s.train, s.test);
    expect(b.count).toBe(5);
    expect(b.mean).toBeGreaterThan(1000);
    expect(b.p95).toBeGreaterThanOrEqual(b.median);
  });

  it('rejects bad options with one error listing the fields', () => {
    expect(() => HeimdallDataModule.synthetic({ samples: 1, insideFraction: 2 })).toThrow(/samples: .*; insideFraction: /);
    try {
      HeimdallDataModule.synthetic({ shadowingDb: [3, 1] });
    } catch (e) {
      expect((e as { code?: string }).code).toBe('HEIMDALL_INVALID_ARGUMENT');
      expect((e as Error).message).toContain('shadowingDb');
    }
  });

  it('writes the on-disk format and reads it back; a bad directory rejects with a code naming it', async () => {
    const dir = join(tempDir('binding'), 'data');
    expect(await HeimdallDataModule.writeSynthetic(dir, 4, { seed: 2 })).toBe(4);
    const m = await HeimdallDataModule.fromDirectory(dir);
    expect(m.size).toBe(4);
    expect(m.inputShape).toEqual([7, 128, 32]);
    expect(m.info.features.sampleRate).toBe(50000);
    await m.materialize();
    await expect(HeimdallDataModule.fromDirectory(join(dir, 'nope'))).rejects.toMatchObject({
      code: 'HEIMDALL_BAD_FILE',
      message: expect.stringContaining(`data directory '${join(dir, 'nope')}' does not exist`),
    });
  });

  it('computeFeatures() of interleaved IQ equals the numpy reference', async () => {
    const dir = tempDir('cf');
    await reference('make-iq', join(dir, 'iq.npy'), 'tones7', '4');
    await py(`np.load(${JSON.stringify(join(dir, 'iq.npy'))}).tofile(${JSON.stringify(join(dir, 'iq.bin'))}); print("{}")`);
    await reference('mel', join(dir, 'iq.npy'), '192000', join(dir, 'ref.npy'));
    const buf = readFileSync(join(dir, 'iq.bin'));
    const iq = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    const out = computeFeatures(iq, [7, 38400], 192000);
    expect(out.shape).toEqual([7, 128, 32]);
    const ref: number[][][] = await py(`print(json.dumps(np.load(${JSON.stringify(join(dir, 'ref.npy'))}).tolist()))`);
    let max = 0;
    ref.flat(2).forEach((v, i) => (max = Math.max(max, Math.abs(v - out.data[i]))));
    expect(max).toBeLessThanOrEqual(0.01);
    expect(() => computeFeatures(new Float32Array(10), [7, 38400], 192000)).toThrow(/iq has 10 elements but shape/);
  });

  it('loadNpy() reads numpy files (float32, float64, complex64) and names a bad one', async () => {
    const dir = tempDir('loadnpy');
    await py(`d = ${JSON.stringify(dir)}
np.save(d + "/f4.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
np.save(d + "/f8.npy", np.array([[0.5], [1.5]]))
np.save(d + "/c8.npy", np.array([1 + 2j, 3 - 4j], np.complex64))
np.save(d + "/i4.npy", np.arange(3, dtype=np.int32))
print("{}")`);
    expect(await loadNpy(join(dir, 'f4.npy'))).toEqual({ data: new Float32Array([0, 1, 2, 3, 4, 5]), shape: [2, 3], dtype: '<f4' });
    expect(await loadNpy(join(dir, 'f8.npy'))).toEqual({ data: new Float32Array([0.5, 1.5]), shape: [2, 1], dtype: '<f8' });
    expect(await loadNpy(join(dir, 'c8.npy'))).toEqual({ data: new Float32Array([1, 2, 3, -4]), shape: [2, 2], dtype: '<c8' });
    await expect(loadNpy(join(dir, 'i4.npy'))).rejects.toMatchObject({ code: 'HEIMDALL_BAD_FILE', message: expect.stringContaining(join(dir, 'i4.npy')) });
  });

  it('materialize() fills the cache on all threads with exactly the features generated one by one', async () => {
    const addon = native();
    const cached = HeimdallDataModule.synthetic({ samples: 96, seed: 9 });
    await cached.materialize();
    const streamed = HeimdallDataModule.synthetic({ samples: 96, seed: 9, cache: false });
    const model = new addon.Model({ variant: 'atto', head: 'localization', inChans: 7, seed: 1 });
    const engine = new addon.Engine(model, { device: 'cpu', seed: 1, threads: 2 });
    const a = await engine.predict(cached.dataset, { batchSize: 32 });
    const b = await engine.predict(streamed.dataset, { batchSize: 32 });
    expect(a.positions!.data.length).toBe(96 * 2);
    expect(Array.from(a.positions!.data)).toEqual(Array.from(b.positions!.data));
    expect(Array.from(a.uncertainties!.data)).toEqual(Array.from(b.uncertainties!.data));
  });

  it('trains convnext_atto through the native loader, reporting position errors in metres', async () => {
    const addon = native();
    const data = HeimdallDataModule.synthetic({ samples: 240, seed: 5 });
    await data.materialize();
    const { train, val } = data.split(0);
    const model = new addon.Model({ variant: 'atto', head: 'localization', inChans: 7, seed: 1 });
    const engine = new addon.Engine(model, { device: 'cpu', seed: 1, optimizer: { name: 'adamw', lr: 2e-3 }, positionScale: data.positionScale });
    const before = await engine.evaluate(val, { batchSize: 32 });
    for (let e = 0; e < 3; e++) await engine.trainEpoch(train, { batchSize: 32, maxEpochs: 3 });
    const after = await engine.evaluate(val, { batchSize: 32 });
    expect(Number.isFinite(after.metrics.position_error_m)).toBe(true);
    expect(after.metrics.position_error_m).toBeGreaterThan(0);
    expect(after.metrics.loss).toBeLessThan(before.metrics.loss!);
  });
});
