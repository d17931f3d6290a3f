// The synthetic RF data set: determinism, geometry, the SNR filter, targets and their normalisation,
// augmentation, learnability (received power — and so position — survives into the features), the
// reference split, and the haversine metrics against numpy.
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BUILD_TIMEOUT_MS, buildTool, py, reference, tempDir, tool, toolError } from './helpers';

// The 7 reference receivers' box (lat 44.395–45.478, lon 7.238–9.123) + 0.5°.
const OUTER = { latMin: 43.895, latMax: 45.978, lonMin: 6.738, lonMax: 9.623 };
const INNER = { latMin: 44.395, latMax: 45.478, lonMin: 7.238, lonMax: 9.123 };

describe('synthetic RF data set', () => {
  let dir: string;
  const f = (name: string) => JSON.stringify(join(dir, name) + (name ? '' : '/'));
  beforeAll(async () => {
    await buildTool();
    dir = tempDir('synth');
  }, BUILD_TIMEOUT_MS);

  it('is deterministic: same seed → identical samples; sample i depends only on (seed, i)', async () => {
    const a = await tool('synth-dump', '6', '3', join(dir, 'a'));
    await tool('synth-dump', '6', '3', join(dir, 'b'));
    await tool('synth-dump', '10', '3', join(dir, 'c'));
    await tool('synth-dump', '6', '4', join(dir, 'd'));
    expect(a.input_shape).toEqual([7, 128, 32]);
    const r = await py(`x = {k: np.load(${f('')} + k + "_x.npy") for k in "abcd"}
y = {k: np.load(${f('')} + k + "_y.npy") for k in "abcd"}
print(json.dumps({"same": bool((x["a"] == x["b"]).all() and (y["a"] == y["b"]).all()),
  "prefix": bool((x["a"] == x["c"][:6]).all() and (y["a"] == y["c"][:6]).all()),
  "other_seed_differs": bool(np.abs(x["a"] - x["d"]).max() > 0.1 and np.abs(y["a"] - y["d"]).max() > 0.01),
  "shape": list(x["a"].shape), "finite": bool(np.isfinite(x["c"]).all())}))`);
    expect(r).toEqual({ same: true, prefix: true, other_seed_differs: true, shape: [6, 7, 128, 32], finite: true });
  });

  it('places transmitters in the receivers’ box + 0.5° margin, 70 % inside the box', async () => {
    await tool('synth-dump', '3000', '1', join(dir, 'geo'), '--no-features');
    const r = await py(`pos = np.load(${f('geo_pos.npy')}); inside = np.load(${f('geo_inside.npy')})
inner = (pos[:, 0] >= ${INNER.latMin}) & (pos[:, 0] <= ${INNER.latMax}) & (pos[:, 1] >= ${INNER.lonMin}) & (pos[:, 1] <= ${INNER.lonMax})
print(json.dumps({"lat": [float(pos[:, 0].min()), float(pos[:, 0].max())], "lon": [float(pos[:, 1].min()), float(pos[:, 1].max())],
  "inside_fraction": float(inner.mean()), "flag_matches": bool((inner == (inside > 0.5)).all())}))`);
    expect(r.lat[0]).toBeGreaterThanOrEqual(OUTER.latMin);
    expect(r.lat[1]).toBeLessThanOrEqual(OUTER.latMax);
    expect(r.lon[0]).toBeGreaterThanOrEqual(OUTER.lonMin);
    expect(r.lon[1]).toBeLessThanOrEqual(OUTER.lonMax);
    // The margin is used (positions reach near its edges) …
    expect(r.lat[0]).toBeLessThan(OUTER.latMin + 0.05);
    expect(r.lon[1]).toBeGreaterThan(OUTER.lonMax - 0.05);
    // … and 70 % lie inside the box (binomial σ ≈ 0.008 at n = 3000).
    expect(r.inside_fraction).toBeGreaterThan(0.67);
    expect(r.inside_fraction).toBeLessThan(0.73);
    expect(r.flag_matches).toBe(true);
  });

  it('keeps only samples with SNR ≥ 3 dB at ≥ 3 receivers (redrawing the others)', async () => {
    // A noise floor of −90 dBm makes far transmitters fail the filter often.
    await tool('synth-dump', '800', '2', join(dir, 'snr'), '--no-features', '--noise-floor', '-90');
    await tool('synth-dump', '800', '2', join(dir, 'snr0'), '--no-features');
    const r = await py(`snr = np.load(${f('snr_snr.npy')}); att = np.load(${f('snr_attempts.npy')}); p = np.load(${f('snr_power.npy')})
snr0 = np.load(${f('snr0_snr.npy')})
print(json.dumps({"min_heard": int((snr >= 3).sum(1).min()), "redrawn": float((att > 1).mean()),
  "snr_is_power_minus_floor": float(np.abs(snr - (p + 90)).max()), "min_heard_default": int((snr0 >= 3).sum(1).min()),
  "some_receivers_deaf": int(((snr >= 3).sum(1) < 7).sum())}))`);
    expect(r.min_heard).toBeGreaterThanOrEqual(3);
    expect(r.min_heard_default).toBeGreaterThanOrEqual(3);
    expect(r.redrawn).toBeGreaterThan(0.05);
    expect(r.some_receivers_deaf).toBeGreaterThan(0);
    expect(r.snr_is_power_minus_floor).toBeLessThan(1e-9);
    const bad = await toolError('synth-dump', '5', '2', join(dir, 'never'), '--no-features', '--noise-floor', '0');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('no transmitter position passed the SNR filter');
  });

  it('targets are the positions normalised by the exposed center and half-range', async () => {
    const out = await tool('synth-dump', '12', '6', join(dir, 'tgt'));
    const n = out.metadata.normalization;
    expect(n.lat_center).toBeCloseTo((OUTER.latMin + OUTER.latMax) / 2, 9);
    expect(n.lon_center).toBeCloseTo((OUTER.lonMin + OUTER.lonMax) / 2, 9);
    expect(n.lat_half_range).toBeCloseTo((OUTER.latMax - OUTER.latMin) / 2, 9);
    expect(n.lon_half_range).toBeCloseTo((OUTER.lonMax - OUTER.lonMin) / 2, 9);
    expect(out.metadata.features).toMatchObject({ sample_rate: 50000, n_fft: 2048, hop: 512, n_mels: 128, frames: 32, mel_scale: 'htk' });
    expect(out.metadata.receivers).toHaveLength(7);
    const r = await py(`y = np.load(${f('tgt_y.npy')}); pos = np.load(${f('tgt_pos.npy')})
norm = (pos - [${n.lat_center}, ${n.lon_center}]) / [${n.lat_half_range}, ${n.lon_half_range}]
print(json.dumps({"err": float(np.abs(y - norm).max()), "range": float(np.abs(y).max()), "dtype": str(y.dtype)}))`);
    expect(r.err).toBeLessThan(1e-6);
    expect(r.range).toBeLessThanOrEqual(1);
    expect(r.dtype).toBe('float32');
  });

  it('writes the on-disk format, whose features equal the streamed ones', async () => {
    await tool('synth-write', '5', '8', join(dir, 'disk'));
    await tool('synth-dump', '5', '8', join(dir, 'stream'));
    await tool('features', join(dir, 'disk'), join(dir, 'fromdisk'));
    const r = await py(`a = np.load(${f('stream_x.npy')}); b = np.load(${f('fromdisk_x.npy')})
ya = np.load(${f('stream_y.npy')}); yb = np.load(${f('fromdisk_y.npy')})
iq = np.load(${f('disk/000000_iq.npy')}); label = np.load(${f('disk/000000_label.npy')})
m = json.load(open(${f('disk/manifest.json')}))
print(json.dumps({"x": float(np.abs(a - b).max()), "y": float(np.abs(ya - yb).max()), "iq": [str(iq.dtype), list(iq.shape)],
  "label": [str(label.dtype), list(label.shape)], "rate": m["sample_rate"], "receivers": len(m["receivers"])}))`);
    expect(r.x).toBeLessThan(1e-5);
    expect(r.y).toBeLessThan(1e-5); // labels are stored as float32 degrees
    expect(r).toMatchObject({ iq: ['complex64', [7, 16384]], label: ['float32', [2]], rate: 50000, receivers: 7 });
  });

  it('features carry received power, and power locates the transmitter (learnability)', async () => {
    await tool('synth-dump', '400', '21', join(dir, 'learn'));
    const r = await py(`x = np.load(${f('learn_x.npy')}); y = np.load(${f('learn_y.npy')})
p = np.load(${f('learn_power.npy')}); d = np.load(${f('learn_dist.npy')})
level = x[:, :, :2, :].mean(axis=(2, 3))  # lowest mel bands: the envelope's DC leakage
corr_power = np.corrcoef(level.ravel(), p.ravel())[0, 1]
corr_dist = np.corrcoef(level.ravel(), np.log10(d).ravel())[0, 1]
tr, te = slice(0, 320), slice(320, 400)
nn = np.argsort(((level[te, None] - level[None, tr]) ** 2).sum(-1), 1)[:, :5]
pred = y[tr][nn].mean(1)
km = np.array([1.0415 * 111.2, 1.4425 * 78.6])
err = np.sqrt((((pred - y[te]) * km) ** 2).sum(1)).mean(); base = np.sqrt((((y[tr].mean(0) - y[te]) * km) ** 2).sum(1)).mean()
print(json.dumps({"corr_power": float(corr_power), "corr_dist": float(corr_dist), "knn_km": float(err), "centroid_km": float(base)}))`);
    expect(r.corr_power).toBeGreaterThan(0.9);
    expect(r.corr_dist).toBeLessThan(-0.8);
    // Even a 5-nearest-neighbour lookup on 14 numbers per sample beats the centroid baseline by 1.8×.
    expect(r.centroid_km / r.knn_km).toBeGreaterThan(1.8);
  });

  it('augments deterministically: noise and ±1–2-frame shifts, each with p = 0.3', async () => {
    await tool('synth-dump', '60', '9', join(dir, 'plain'));
    await tool('synth-dump', '60', '9', join(dir, 'aug1'), '--augment', '77');
    await tool('synth-dump', '60', '9', join(dir, 'aug2'), '--augment', '77');
    await tool('synth-dump', '60', '9', join(dir, 'aug3'), '--augment', '78');
    const r = await py(`x = np.load(${f('plain_x.npy')}); a = np.load(${f('aug1_x.npy')}); b = np.load(${f('aug2_x.npy')}); c = np.load(${f('aug3_x.npy')})
def shifted(s, k):
    out = np.empty_like(s)
    if k > 0:
        out[..., k:] = s[..., :-k]; out[..., :k] = s[..., :1]
    else:
        out[..., :k] = s[..., -k:]; out[..., k:] = s[..., -1:]
    return out
kinds = {"same": 0, "shift": 0, "noise": 0, "both": 0}
for i in range(len(x)):
    if (a[i] == x[i]).all(): kinds["same"] += 1; continue
    exact = [k for k in (-2, -1, 1, 2) if (a[i] == shifted(x[i], k)).all()]
    if exact: kinds["shift"] += 1; continue
    resid = [np.std(a[i] - shifted(x[i], k)) for k in (-2, -1, 1, 2)] + [np.std(a[i] - x[i])]
    if abs(resid[-1] - 0.05) < 0.005: kinds["noise"] += 1
    elif min(resid[:-1]) < 0.055: kinds["both"] += 1
print(json.dumps({**kinds, "deterministic": bool((a == b).all()), "seed_matters": bool((a != c).any())}))`);
    expect(r.deterministic).toBe(true);
    expect(r.seed_matters).toBe(true);
    expect(r.same + r.shift + r.noise + r.both).toBe(60); // every change is one of the two augmentations
    // P(untouched) = 0.49, P(shift only) = P(noise only) = 0.21, P(both) = 0.09.
    expect(r.same).toBeGreaterThan(15);
    expect(r.same).toBeLessThan(45);
    expect(r.shift).toBeGreaterThan(2);
    expect(r.noise).toBeGreaterThan(2);
  });
});

describe('split and metrics', () => {
  beforeAll(async () => {
    await buildTool();
  }, BUILD_TIMEOUT_MS);

  it('splits as the reference: 100 → 72/18/10, 2000 → 1440/360/200, 3 → 1/1/1', async () => {
    expect(await tool('split', '100', '0')).toEqual({ train: 72, val: 18, test: 10 });
    expect(await tool('split', '2000', '1')).toEqual({ train: 1440, val: 360, test: 200 });
    expect(await tool('split', '3', '0')).toEqual({ train: 1, val: 1, test: 1 });
    const r = await toolError('split', '2', '0');
    expect(r.stderr).toContain('a train/val/test split needs at least 3 samples, got 2');
  });

  it('haversine errors and their mean/median/p68/p95 match numpy', async () => {
    const dir = tempDir('geo');
    await py(`rng = np.random.default_rng(3)
a = np.stack([rng.uniform(43.9, 46, 50), rng.uniform(6.7, 9.7, 50)], 1).astype(np.float32).astype(np.float64)
b = a + rng.normal(scale=0.2, size=a.shape)
b[0] = a[0]
np.save(${JSON.stringify(join(dir, 'a.npy'))}, a.astype(np.float32)); np.save(${JSON.stringify(join(dir, 'b.npy'))}, b)
print("{}")`);
    const got = await tool('metrics', join(dir, 'a.npy'), join(dir, 'b.npy'));
    const want = await reference('haversine', join(dir, 'a.npy'), join(dir, 'b.npy'));
    expect(got.count).toBe(50);
    expect(got.errors[0]).toBe(0);
    for (let i = 0; i < 50; i++) expect(Math.abs(got.errors[i] - want.errors[i])).toBeLessThan(1e-6);
    for (const k of ['mean', 'median', 'p68', 'p95']) expect(Math.abs(got[k] - want[k])).toBeLessThan(1e-6);
    // One degree of latitude ≈ 111.2 km on the mean-radius sphere.
    await py(`np.save(${JSON.stringify(join(dir, 'p.npy'))}, np.array([[45.0, 8.0]])); np.save(${JSON.stringify(join(dir, 'q.npy'))}, np.array([[46.0, 8.0]])); print("{}")`);
    const deg = await tool('metrics', join(dir, 'p.npy'), join(dir, 'q.npy'));
    expect(deg.mean).toBeCloseTo((6371008.8 * Math.PI) / 180, 3);
  });
});
