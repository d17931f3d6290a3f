// Mel features of IQ: the native pipeline (ATen stft, float32) against an independent numpy float64
// re-implementation (test/data/reference.py: HTK mel scale, center/reflect, periodic Hann, power → dB,
// fixed-reference normalisation, crop/pad to 32 frames).
// Tolerance, in normalised units (1 unit = 20 dB): max |Δ| ≤ 0.01 (0.2 dB), mean |Δ| ≤ 1e-4. The largest
// differences sit in bands > 100 dB below the frame's strongest band, where float32 FFT round-off shows.
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BUILD_TIMEOUT_MS, buildTool, py, reference, tempDir, tool } from './helpers';

const MAX_ABS = 0.01;
const MEAN_ABS = 1e-4;

async function compare(a: string, b: string): Promise<{ max: number; mean: number; shape: number[] }> {
  return py(`a = np.load(${JSON.stringify(a)}); b = np.load(${JSON.stringify(b)})
assert a.shape == b.shape, (a.shape, b.shape)
d = np.abs(a.astype(np.float64) - b)
print(json.dumps({"max": float(d.max()), "mean": float(d.mean()), "shape": list(a.shape)}))`);
}

describe('mel features', () => {
  let dir: string;
  beforeAll(async () => {
    await buildTool();
    dir = tempDir('mel');
  }, BUILD_TIMEOUT_MS);

  it('match numpy for 7 receivers of 192 kHz complex64 IQ (crop 76 → 32 frames)', async () => {
    const iq = join(dir, 'tones7.npy');
    await reference('make-iq', iq, 'tones7', '1');
    await tool('mel', iq, '192000', join(dir, 'n7.npy'));
    await reference('mel', iq, '192000', join(dir, 'r7.npy'));
    const c = await compare(join(dir, 'n7.npy'), join(dir, 'r7.npy'));
    expect(c.shape).toEqual([7, 128, 32]);
    expect(c.max).toBeLessThanOrEqual(MAX_ABS);
    expect(c.mean).toBeLessThanOrEqual(MEAN_ABS);
  });

  it('match numpy for a short 1-D signal at 50 kHz (16 frames, padded with 0 to 32)', async () => {
    const iq = join(dir, 'short.npy');
    await reference('make-iq', iq, 'short1d', '2');
    const out = await tool('mel', iq, '50000', join(dir, 'ns.npy'));
    expect(out.shape).toEqual([128, 32]);
    await reference('mel', iq, '50000', join(dir, 'rs.npy'));
    const c = await compare(join(dir, 'ns.npy'), join(dir, 'rs.npy'));
    expect(c.max).toBeLessThanOrEqual(MAX_ABS);
    const padding = await py(`a = np.load(${JSON.stringify(join(dir, 'ns.npy'))}); print(json.dumps([float(np.abs(a[:, 16:]).max()), float(np.abs(a[:, :16]).max())]))`);
    expect(padding[0]).toBe(0);
    expect(padding[1]).toBeGreaterThan(0);
  });

  it('take a real-valued signal as the magnitude already', async () => {
    const iq = join(dir, 'real.npy');
    await reference('make-iq', iq, 'real', '3');
    await tool('mel', iq, '192000', join(dir, 'nr.npy'));
    await reference('mel', iq, '192000', join(dir, 'rr.npy'));
    const c = await compare(join(dir, 'nr.npy'), join(dir, 'rr.npy'));
    expect(c.shape).toEqual([3, 128, 32]);
    expect(c.max).toBeLessThanOrEqual(MAX_ABS);
    expect(c.mean).toBeLessThanOrEqual(MEAN_ABS);
  });

  it('refuse a signal too short for the reflect padding, naming the sizes', async () => {
    const iq = join(dir, 'tiny.npy');
    await py(`np.save(${JSON.stringify(iq)}, np.ones(1000, np.complex64)); print("{}")`);
    const { toolError } = await import('./helpers');
    const r = await toolError('mel', iq, '192000', join(dir, 'x.npy'));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('HEIMDALL_SHAPE_MISMATCH');
    expect(r.stderr).toMatch(/more than n_fft\/2 = 1024 samples, got 1000/);
  });
});
