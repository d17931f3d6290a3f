// Fuzzing the native parsers (issue 14): seeded mutations of valid .npy, safetensors and manifest.json files. Every case must
// end in a result or one coded HeimdallError — never a crash, a hang or an uncoded error. Seeded: a failure
// names its seed and case, and reproduces. A longer (nightly) run: `HEIMDALL_FUZZ_CASES=100000 HEIMDALL_FUZZ_SEED=<n>
// npx vitest run --config test/vitest.config.ts test/fuzz` (60 000 cases of each took 32 s on 2 cores).
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HeimdallError } from '../../lib/errors.js';
import { loadNpy } from '../../lib/data/npy.js';
import { dataBinding, native } from '../../lib/native.js';
import { tempDir } from '../helpers/tmp.js';

const CASES = Number(process.env.HEIMDALL_FUZZ_CASES ?? 5000);
const SEED = Number(process.env.HEIMDALL_FUZZ_SEED ?? 0);

/** xorshift32: the same seed gives the same mutations on every machine. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

/** One seeded mutation: flip bytes, overwrite with boundary values, truncate, duplicate a slice, or insert digits. */
function mutate(src: Buffer, r: () => number): Buffer {
  const b = Buffer.from(src);
  const at = () => Math.floor(r() * b.length);
  switch (Math.floor(r() * 6)) {
    case 0: for (let i = 0, n = 1 + Math.floor(r() * 8); i < n; i++) b[at()] = Math.floor(r() * 256); return b;
    case 1: { const i = at(); for (const v of [0xff, 0x7f, 0x00, 0x80]) if (i < b.length) b[i] = v; b.fill(r() < 0.5 ? 0xff : 0, i, Math.min(b.length, i + 8)); return b; }
    case 2: return b.subarray(0, at());
    case 3: { const i = at(); const j = Math.min(b.length, i + 1 + Math.floor(r() * 64)); return Buffer.concat([b.subarray(0, j), b.subarray(i, j), b.subarray(j)]); }
    case 4: { const i = Math.floor(r() * Math.min(b.length, 256)); return Buffer.concat([b.subarray(0, i), Buffer.from(String(Math.floor(r() * 1e12))), b.subarray(i)]); }
    default: { const i = Math.floor(r() * Math.min(b.length, 200)); b[i] = '0123456789-,:[]{}"\''.charCodeAt(Math.floor(r() * 19)); return b; }
  }
}

async function fuzz(name: string, valid: Buffer, seed: number, run: (path: string) => Promise<unknown>): Promise<Record<string, number>> {
  const dir = tempDir(`fuzz-${name}`);
  const r = rng(seed ^ SEED);
  const outcomes: Record<string, number> = {};
  for (let c = 0; c < CASES; c++) {
    const path = join(dir, `case.${name}`);
    const bytes = mutate(valid, r);
    writeFileSync(path, bytes);
    const outcome = await run(path).then(() => 'ok', (e: unknown) => {
      if (!(e instanceof HeimdallError)) {
        writeFileSync(join(dir, `failing-${c}.${name}`), bytes);
        throw new Error(`${name} case ${c} (seed ${seed ^ SEED}): not a coded error: ${String(e)} — input kept in ${dir}`);
      }
      return e.code;
    });
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  }
  return outcomes;
}

describe('fuzzing the native parsers (seeded mutations of valid files)', () => {
  it(`.npy: ${CASES} mutations of a complex64 file end in an array or one coded error`, async () => {
    const dir = tempDir('fuzz-npy-src');
    const dict = "{'descr': '<c8', 'fortran_order': False, 'shape': (3, 40), }";
    const header = Buffer.from(`${dict}${' '.repeat(63 - ((10 + dict.length) % 64))}\n`);
    const len = Buffer.alloc(2);
    len.writeUInt16LE(header.length);
    const data = Buffer.alloc(3 * 40 * 8);
    for (let i = 0; i < data.length / 4; i++) data.writeFloatLE(Math.sin(i), i * 4);
    const valid = Buffer.concat([Buffer.from('\x93NUMPY\x01\x00', 'latin1'), len, header, data]);
    writeFileSync(join(dir, 'valid.npy'), valid);
    const parsed = await loadNpy(join(dir, 'valid.npy'));
    expect(parsed.shape.slice(0, 2)).toEqual([3, 40]);
    const outcomes = await fuzz('npy', valid, 0x5eed1, (p) => loadNpy(p));
    expect(outcomes.HEIMDALL_BAD_FILE).toBeGreaterThan(CASES / 4);
    expect(Object.keys(outcomes).every((k) => k === 'ok' || k === 'HEIMDALL_BAD_FILE')).toBe(true);
  }, 120_000);

  it(`safetensors: ${CASES} mutations of a weights file end in loaded weights or one coded error`, async () => {
    const dir = tempDir('fuzz-st-src');
    const model = new (native().Model)({ variant: 'atto', head: 'regression', outputs: 2 });
    const full = join(dir, 'weights.safetensors');
    await model.saveWeights(full);
    // A small valid file: the header of the real one, with two of its tensors (the rest dropped).
    const whole = readFileSync(full);
    const n = Number(whole.readBigUInt64LE(0));
    const header = JSON.parse(whole.subarray(8, 8 + n).toString()) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
    const keep = ['head.fc.bias', 'head.norm.weight'];
    const small: Record<string, unknown> = { __metadata__: header.__metadata__ };
    const parts: Buffer[] = [];
    let offset = 0;
    for (const k of keep) {
      const t = header[k] as { dtype: string; shape: number[]; data_offsets: [number, number] };
      const bytes = whole.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
      small[k] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
      parts.push(bytes);
      offset += bytes.length;
    }
    const h = Buffer.from(JSON.stringify(small));
    const l = Buffer.alloc(8);
    l.writeBigUInt64LE(BigInt(h.length));
    const valid = Buffer.concat([l, h, ...parts]);
    writeFileSync(join(dir, 'small.safetensors'), valid);
    // It parses: what is refused is the missing backbone, past the parser.
    await expect(model.loadWeights(join(dir, 'small.safetensors'), { strict: false })).rejects.toMatchObject({ code: 'HEIMDALL_WEIGHTS_MISMATCH' });
    const outcomes = await fuzz('safetensors', valid, 0x5eed2, (p) => model.loadWeights(p, { strict: false }));
    expect(outcomes.HEIMDALL_BAD_FILE).toBeGreaterThan(CASES / 4);
    expect(Object.keys(outcomes).every((k) => ['ok', 'HEIMDALL_BAD_FILE', 'HEIMDALL_WEIGHTS_MISMATCH'].includes(k)), JSON.stringify(outcomes)).toBe(true);
  }, 120_000);

  it(`manifest.json: ${CASES} mutations of a data folder's manifest end in an opened data set or one coded error`, async () => {
    const src = tempDir('fuzz-manifest-src');
    await dataBinding().writeSynthetic(src, 3, {});
    const valid = readFileSync(join(src, 'manifest.json'));
    const dir = tempDir('fuzz-manifest');
    for (const f of readdirSync(src)) if (f !== 'manifest.json') copyFileSync(join(src, f), join(dir, f));
    await dataBinding().heimdallDirectory(src, {});
    const outcomes = await fuzz('json', valid, 0x5eed3, async (p) => {
      copyFileSync(p, join(dir, 'manifest.json'));
      return dataBinding().heimdallDirectory(dir, {});
    });
    expect(outcomes.HEIMDALL_BAD_FILE).toBeGreaterThan(CASES / 10);
    expect(Object.keys(outcomes).every((k) => ['ok', 'HEIMDALL_BAD_FILE', 'HEIMDALL_INVALID_ARGUMENT', 'HEIMDALL_SHAPE_MISMATCH'].includes(k)), JSON.stringify(outcomes)).toBe(true);
  }, 120_000);
});
