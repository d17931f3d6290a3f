// The native .npy reader against files written by numpy itself, and the on-disk data set's errors:
// every bad input is one heimdall::Error (code HEIMDALL_BAD_FILE / HEIMDALL_SHAPE_MISMATCH) naming the file.
import { copyFileSync, mkdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BUILD_TIMEOUT_MS, buildTool, py, reference, tempDir, tool, toolError } from './helpers';

describe('.npy reader', () => {
  let dir: string;
  let expected: Record<string, { descr: string; shape: number[]; sum: number; sum_imag?: number }>;
  beforeAll(async () => {
    await buildTool();
    dir = tempDir('npy');
    expected = (await reference('make-npy', dir)).ok;
  }, BUILD_TIMEOUT_MS);

  it('reads numpy-written v1, v2 and v3 files of complex64, float32 and float64 exactly', async () => {
    for (const [name, want] of Object.entries(expected)) {
      const got = await tool('read-npy', join(dir, name));
      expect(got.descr, name).toBe(want.descr);
      expect(got.shape, name).toEqual(want.shape);
      expect(got.sum, name).toBeCloseTo(want.sum, 9);
      if (want.sum_imag !== undefined) expect(got.sum_imag, name).toBeCloseTo(want.sum_imag, 9);
    }
    expect(Object.keys(expected)).toEqual(expect.arrayContaining(['c8_v1.npy', 'c8_v2.npy', 'c8_v3.npy']));
  });

  it.each([
    ['fortran.npy', /Fortran-ordered arrays are not supported \(expected C order/],
    ['int32.npy', /unsupported dtype '<i4' \(expected little-endian complex64 '<c8', float32 '<f4' or float64 '<f8'\)/],
    ['big_endian.npy', /unsupported dtype '>f4'/],
    ['c16.npy', /unsupported dtype '<c16'/],
    ['truncated.npy', /truncated data: the header announces 2100 values \(16800 bytes\) but the file holds 16700 bytes/],
    ['trailing.npy', /8 unexpected bytes after the 16800 bytes of data/],
    ['not_npy.npy', /not a NumPy \.npy file/],
  ])('rejects %s with an error naming the file and what was expected', async (name, message) => {
    const r = await toolError('read-npy', join(dir, name));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('HEIMDALL_BAD_FILE');
    expect(r.stderr).toContain(join(dir, name));
    expect(r.stderr).toMatch(message);
  });

  it('a header whose shape overflows 64 bits is refused, not allocated', async () => {
    // A v1 header written by hand: numpy cannot write an array this size.
    const dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }";
    const pad = 64 - ((10 + dict.length + 1) % 64);
    const header = Buffer.from(`${dict}${' '.repeat(pad % 64)}\n`);
    const len = Buffer.alloc(2);
    len.writeUInt16LE(header.length);
    const path = join(dir, 'overflow.npy');
    writeFileSync(path, Buffer.concat([Buffer.from('\x93NUMPY\x01\x00', 'latin1'), len, header, Buffer.alloc(64)]));
    const r = await toolError('read-npy', path);
    expect(r.stderr).toContain('HEIMDALL_BAD_FILE');
    expect(r.stderr).toContain(`bad .npy file '${path}': malformed header (the shape's size overflows)`);
  });

  it('names a missing file', async () => {
    const r = await toolError('read-npy', join(dir, 'nope.npy'));
    expect(r.stderr).toContain(`cannot open .npy file '${join(dir, 'nope.npy')}'`);
  });
});

describe('on-disk data set', () => {
  let base: string;
  beforeAll(async () => {
    await buildTool();
    base = tempDir('dir');
    await tool('synth-write', '4', '5', join(base, 'good'));
  }, BUILD_TIMEOUT_MS);

  function variant(name: string): string {
    const d = join(base, name);
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d);
    for (const f of ['manifest.json', ...[0, 1, 2, 3].flatMap((i) => [`00000${i}_iq.npy`, `00000${i}_label.npy`])])
      copyFileSync(join(base, 'good', f), join(d, f));
    return d;
  }

  it('features of a directory written by the generator match numpy computed from the same files', async () => {
    const out = await tool('features', join(base, 'good'), join(base, 'native'));
    expect(out.size).toBe(4);
    expect(out.ids).toEqual(['000000', '000001', '000002', '000003']);
    expect(out.metadata.features.sample_rate).toBe(50000);
    await reference('features-dir', join(base, 'good'), join(base, 'ref'));
    const c = await py(`a = np.load(${JSON.stringify(join(base, 'native_x.npy'))}); b = np.load(${JSON.stringify(join(base, 'ref_x.npy'))})
ya = np.load(${JSON.stringify(join(base, 'native_y.npy'))}); yb = np.load(${JSON.stringify(join(base, 'ref_y.npy'))})
print(json.dumps({"shape": list(a.shape), "max": float(np.abs(a - b).max()), "mean": float(np.abs(a - b).mean()), "y": float(np.abs(ya - yb).max())}))`);
    expect(c.shape).toEqual([4, 7, 128, 32]);
    expect(c.max).toBeLessThanOrEqual(0.01);
    expect(c.mean).toBeLessThanOrEqual(1e-4);
    expect(c.y).toBeLessThanOrEqual(1e-6);
  });

  it('a missing directory', async () => {
    const r = await toolError('features', join(base, 'absent'), join(base, 'x'));
    expect(r.stderr).toContain(`HEIMDALL_BAD_FILE]: data directory '${join(base, 'absent')}' does not exist`);
  });

  it('a directory without IQ files', async () => {
    const d = join(base, 'empty');
    mkdirSync(d, { recursive: true });
    const r = await toolError('features', d, join(base, 'x'));
    expect(r.stderr).toContain(`data directory '${d}' holds no <id>_iq.npy files`);
  });

  it('a label missing for an IQ file', async () => {
    const d = variant('nolabel');
    unlinkSync(join(d, '000002_label.npy'));
    const r = await toolError('features', d, join(base, 'x'));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`label file '${join(d, '000002_label.npy')}' is missing for '${join(d, '000002_iq.npy')}'`);
  });

  it('a truncated IQ file', async () => {
    const d = variant('truncated');
    await py(`p = ${JSON.stringify(join(d, '000001_iq.npy'))}; b = open(p, 'rb').read(); open(p, 'wb').write(b[:-4096]); print("{}")`);
    const r = await toolError('features', d, join(base, 'x'));
    expect(r.stderr).toContain(`HEIMDALL_BAD_FILE]: bad .npy file '${join(d, '000001_iq.npy')}': truncated data`);
  });

  it('NaN or Inf in one IQ file: the error names the sample and the file (not a NaN loss later in training)', async () => {
    const d = variant('nonfinite');
    const p = join(d, '000002_iq.npy');
    await py(`p = ${JSON.stringify(p)}; a = np.load(p); a[3, 100] = np.nan; a[0, 7] = complex(0, np.inf); np.save(p, a); print("{}")`);
    const r = await toolError('features', d, join(base, 'x'));
    expect(r.stderr).toContain(`HEIMDALL_BAD_FILE]: sample '000002': '${p}' holds 2 NaN or Inf IQ value(s)`);
  });

  it('IQ of the wrong dtype', async () => {
    const d = variant('dtype');
    await py(`np.save(${JSON.stringify(join(d, '000003_iq.npy'))}, np.zeros((7, 16384), np.complex128)); print("{}")`);
    const r = await toolError('features', d, join(base, 'x'));
    expect(r.stderr).toContain(`bad .npy file '${join(d, '000003_iq.npy')}': unsupported dtype '<c16'`);
    await py(`np.save(${JSON.stringify(join(d, '000003_iq.npy'))}, np.zeros((7, 16384), np.float32)); print("{}")`);
    const r2 = await toolError('features', d, join(base, 'x'));
    expect(r2.stderr).toContain(`bad .npy file '${join(d, '000003_iq.npy')}': dtype is float32 ('<f4'), expected complex64 ('<c8') IQ`);
  });

  it('a label of the wrong dtype or shape', async () => {
    const d = variant('label');
    await py(`np.save(${JSON.stringify(join(d, '000000_label.npy'))}, np.array([45, 8], np.int64)); print("{}")`);
    let r = await toolError('features', d, join(base, 'x'));
    expect(r.stderr).toContain(`bad .npy file '${join(d, '000000_label.npy')}': unsupported dtype '<i8'`);
    await py(`np.save(${JSON.stringify(join(d, '000000_label.npy'))}, np.array([45, 8, 1], np.float32)); print("{}")`);
    r = await toolError('features', d, join(base, 'x'));
    expect(r.stderr).toContain(`bad .npy file '${join(d, '000000_label.npy')}': shape [3], expected [2] (lat, lon)`);
  });

  it('IQ files with a different number of receivers', async () => {
    const d = variant('receivers');
    await py(`np.save(${JSON.stringify(join(d, '000001_iq.npy'))}, np.ones((5, 16384), np.complex64)); print("{}")`);
    const r = await toolError('features', d, join(base, 'x'));
    expect(r.stderr).toContain('HEIMDALL_SHAPE_MISMATCH');
    expect(r.stderr).toContain(`'${join(d, '000001_iq.npy')}' has 5 receivers, the files before it 7`);
  });

  it('a malformed manifest', async () => {
    const d = variant('manifest');
    writeFileSync(join(d, 'manifest.json'), '{"sample_rate": "fast"');
    let r = await toolError('features', d, join(base, 'x'));
    expect(r.stderr).toContain(`manifest '${join(d, 'manifest.json')}' is not valid JSON`);
    writeFileSync(join(d, 'manifest.json'), '{"sample_rate": -5}');
    r = await toolError('features', d, join(base, 'x'));
    expect(r.stderr).toContain(`manifest '${join(d, 'manifest.json')}': sample_rate must be a positive number of Hz`);
  });

  it('1-D IQ without a manifest: one channel, 192 kHz, normalised by the labels’ box', async () => {
    const d = join(base, 'mono');
    mkdirSync(d, { recursive: true });
    await py(`rng = np.random.default_rng(1)
for i in range(3):
    np.save(${JSON.stringify(d)} + f"/s{i}_iq.npy", (rng.normal(size=40000) + 1j * rng.normal(size=40000)).astype(np.complex64) * 1e-4)
    np.save(${JSON.stringify(d)} + f"/s{i}_label.npy", np.array([45 + i * 0.1, 8 - i * 0.1], np.float32))
print("{}")`);
    const out = await tool('features', d, join(base, 'mono'));
    expect(out.ids).toEqual(['s0', 's1', 's2']);
    expect(out.metadata.features.sample_rate).toBe(192000);
    const shape = await py(`print(json.dumps(list(np.load(${JSON.stringify(join(base, 'mono_x.npy'))}).shape)))`);
    expect(shape).toEqual([3, 1, 128, 32]);
  });
});
