// Fuzzing the parsers (issue 14): seeded mutations of valid .npy, safetensors and manifest.json files, training
// checkpoints (the engine's state and the trainer's JSON state, as Trainer.fit({ ckptPath }) restores them), ONNX
// files given to loadModel(), and MLflow's JSON answers (a small HTTP server here answers the REST API and the
// artifact proxy with mutated bodies). Every case must end in a result or one coded HeimdallError — never a crash,
// a hang (each case has a deadline) or an uncoded error. Seeded: a failure names its seed and case, and reproduces. A longer (nightly) run: `HEIMDALL_FUZZ_CASES=100000 HEIMDALL_FUZZ_SEED=<n>
// npx vitest run --config test/vitest.config.ts test/fuzz` (60 000 cases of each took 32 s on 2 cores).
// Checkpoints run CASES/20 cases (each writes a 15 MB file), ONNX files CASES/10, MLflow answers CASES/5; with
// HEIMDALL_FUZZ_CASES=30000 HEIMDALL_FUZZ_SEED=7 the checkpoint, trainer-state and MLflow-answer tests passed.
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HeimdallError } from '../../lib/errors.js';
import { loadNpy } from '../../lib/data/npy.js';
import { HeimdallDataModule } from '../../lib/data/heimdall.js';
import { loadModel } from '../../lib/inference/model.js';
import { dataBinding, native } from '../../lib/native.js';
import { exportOnnx } from '../../lib/onnx/export.js';
import { EarlyStopping } from '../../lib/trainer/callbacks/early_stopping.js';
import { ModelCheckpoint } from '../../lib/trainer/callbacks/model_checkpoint.js';
import { restoreCallbackStates, restoreCheckpoint } from '../../lib/trainer/trainer.js';
import { MLflowTracker } from '../../lib/tracking/tracker.js';
import { tempDir } from '../helpers/tmp.js';

const CASES = Number(process.env.HEIMDALL_FUZZ_CASES ?? 5000);
const SEED = Number(process.env.HEIMDALL_FUZZ_SEED ?? 0);
/** Cases of the parsers whose every case writes or opens a large file (a checkpoint, an ONNX session). */
const FEW = Math.max(50, Math.round(CASES / 10));
/** Checkpoint cases: each writes a 15 MB file. */
const CKPT_CASES = Math.max(50, Math.round(CASES / 20));
/** A case that takes longer than this is a hang. */
const CASE_DEADLINE_MS = 20_000;

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

interface FuzzOptions {
  cases?: number;
  /** Mutate only the first `region` bytes (a header), keep the rest. */
  region?: number;
  /** Called once with the folder the cases are written in (files a case needs next to it). */
  prepare?: (dir: string) => void;
}

/** Fails when `p` takes longer than CASE_DEADLINE_MS. */
function withDeadline<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const deadline = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer after ${CASE_DEADLINE_MS} ms (a hang)`)), CASE_DEADLINE_MS); });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

async function fuzz(name: string, valid: Buffer, seed: number, run: (path: string) => Promise<unknown>, o: FuzzOptions = {}): Promise<Record<string, number>> {
  const dir = tempDir(`fuzz-${name}`);
  o.prepare?.(dir);
  const r = rng(seed ^ SEED);
  const outcomes: Record<string, number> = {};
  const cases = o.cases ?? CASES;
  for (let c = 0; c < cases; c++) {
    const path = join(dir, `case.${name}`);
    const bytes = o.region ? Buffer.concat([mutate(valid.subarray(0, o.region), r), valid.subarray(o.region)]) : mutate(valid, r);
    writeFileSync(path, bytes);
    const outcome = await withDeadline(run(path), `${name} case ${c} (seed ${seed ^ SEED})`).then(() => 'ok', (e: unknown) => {
      if (!(e instanceof HeimdallError)) {
        writeFileSync(join(dir, `failing-${c}.${name}`), bytes);
        throw new Error(`${name} case ${c} (seed ${seed ^ SEED}): not a coded error: ${String(e)} — input kept in ${dir}`);
      }
      if (process.env.HEIMDALL_FUZZ_SHOW === e.code) console.log(`${name} case ${c}: ${e.code}: ${e.message}`);
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

describe('fuzzing checkpoints and ONNX files (what Trainer.fit({ ckptPath }) and loadModel() read)', () => {
  /** The callbacks whose states a checkpoint holds, fresh for each case. */
  const callbacksIn = (dir: string) => [new ModelCheckpoint({ dirpath: dir, monitor: 'val/loss' }), new EarlyStopping({ monitor: 'val/loss', patience: 5 })];
  /** A trainer state as saveCheckpoint() writes it, with a kept checkpoint and a waiting early stop. */
  function trainerState(dir: string): string {
    const [mc, es] = callbacksIn(dir);
    return JSON.stringify({
      trainer: { epoch: 2, globalStep: 40 },
      callbacks: {
        [mc!.stateKey]: { ...mc!.stateDict!(), kept: [{ name: 'epoch=1-val_loss=0.5000.safetensors', score: 0.5, epoch: 1 }], lastModelPath: join(dir, 'last.safetensors') },
        [es!.stateKey]: { wait: 1, best: 0.5, stoppedEpoch: null, patience: 5 },
      },
    });
  }

  it(`checkpoints: ${CKPT_CASES} mutations of a training checkpoint's header (tensors, engine state, trainer state) end in a restored trainer or one coded error`, async () => {
    const dir = tempDir('fuzz-ckpt-src');
    const model = new (native().Model)({ variant: 'atto', head: 'regression', outputs: 2, seed: 1 });
    const engine = new (native().Engine)(model, { device: 'cpu', seed: 1, optimizer: { name: 'sgd', lr: 1e-3 }, threads: 2 });
    const ckpt = join(dir, 'epoch=2.safetensors');
    await engine.saveCheckpoint(ckpt, trainerState(dir));
    const valid = readFileSync(ckpt);
    const header = 8 + Number(valid.readBigUInt64LE(0));
    // the restore path of Trainer.fit({ ckptPath }): the engine's state, then the callbacks'
    const restore = (p: string) => restoreCheckpoint(engine, callbacksIn(dir), p);
    await restore(ckpt);
    const outcomes = await fuzz('ckpt', valid, 0x5eed4, restore, { cases: CKPT_CASES, region: header });
    expect(outcomes.HEIMDALL_BAD_FILE).toBeGreaterThan(CKPT_CASES / 4);
    expect(Object.keys(outcomes).every((k) => ['ok', 'HEIMDALL_BAD_FILE', 'HEIMDALL_WEIGHTS_MISMATCH', 'HEIMDALL_SHAPE_MISMATCH', 'HEIMDALL_INVALID_ARGUMENT'].includes(k)), JSON.stringify(outcomes)).toBe(true);
  }, 180_000);

  it(`trainer state: ${CASES} mutations of a checkpoint's JSON trainer state end in restored callbacks or one coded error`, async () => {
    const dir = tempDir('fuzz-state-src');
    const valid = Buffer.from(trainerState(dir));
    restoreCallbackStates(valid.toString(), callbacksIn(dir), 'valid');
    const outcomes = await fuzz('state.json', valid, 0x5eed5, async (p) => restoreCallbackStates(readFileSync(p, 'utf8'), callbacksIn(dir), p));
    expect(outcomes.HEIMDALL_BAD_FILE).toBeGreaterThan(CASES / 4);
    expect(Object.keys(outcomes).every((k) => k === 'ok' || k === 'HEIMDALL_BAD_FILE'), JSON.stringify(outcomes)).toBe(true);
  }, 120_000);

  it(`ONNX: ${FEW} mutations of an exported model end in a loaded model or one coded error`, async () => {
    const dir = tempDir('fuzz-onnx-src');
    await HeimdallDataModule.writeSynthetic(join(dir, 'data'), 3, { seed: 3 });
    const ds = await HeimdallDataModule.fromDirectory(join(dir, 'data'));
    const model = new (native().Model)({ variant: 'atto', head: 'localization', inChans: 7, seed: 2 });
    const onnx = join(dir, 'model.onnx');
    // the weights in a side file (model.onnx.data): the graph and the metadata are what is mutated
    await exportOnnx(model, onnx, { inputShape: [7, 128, 32], metadata: { 'heimdall.data': ds.info.metadataJson }, validate: false, externalDataThreshold: 0 });
    await (await loadModel(onnx)).close();
    const valid = readFileSync(onnx);
    const outcomes = await fuzz('onnx', valid, 0x5eed6, async (p) => (await loadModel(p)).close(), {
      cases: FEW,
      prepare: (d) => copyFileSync(`${onnx}.data`, join(d, 'model.onnx.data')),
    });
    expect(outcomes.HEIMDALL_BAD_FILE).toBeGreaterThan(FEW / 4);
    expect(Object.keys(outcomes).every((k) => ['ok', 'HEIMDALL_BAD_FILE', 'HEIMDALL_NOT_FOUND'].includes(k)), JSON.stringify(outcomes)).toBe(true);
  }, 180_000);
});

describe('fuzzing MLflow JSON answers (a server answering mutated bodies)', () => {
  const RUN = '0123456789abcdef0123456789abcdef';
  const experiment = { experiment_id: '1', name: 'fuzz', artifact_location: 'mlflow-artifacts:/1', lifecycle_stage: 'active', creation_time: 1700000000000, last_update_time: 1700000000000, tags: [{ key: 'team', value: 'rf' }] };
  const run = {
    info: { run_id: RUN, run_uuid: RUN, run_name: 'fuzzed', experiment_id: '1', user_id: 'u', status: 'FINISHED', start_time: 1700000000000, end_time: 1700000001000, artifact_uri: `mlflow-artifacts:/1/${RUN}/artifacts`, lifecycle_stage: 'active' },
    data: { metrics: [{ key: 'loss', value: 0.5, timestamp: 1700000000500, step: 3 }, { key: 'nan', value: 'NaN', timestamp: 1700000000500, step: 0 }], params: [{ key: 'lr', value: '0.01' }], tags: [{ key: 'mlflow.runName', value: 'fuzzed' }] },
    inputs: {},
  };
  const version = { name: 'm', version: '1', creation_timestamp: 1700000000000, last_updated_timestamp: 1700000000000, current_stage: 'None', description: '', source: `runs:/${RUN}/model`, run_id: RUN, status: 'READY', tags: [{ key: 'k', value: 'v' }], aliases: ['champion'] };
  /** MLflow's answers (shapes of MLflow 3's REST API and artifact proxy), by path. */
  const answers: Record<string, unknown> = {
    '/api/2.0/mlflow/experiments/search': { experiments: [experiment], next_page_token: '' },
    '/api/2.0/mlflow/experiments/get-by-name': { experiment },
    '/api/2.0/mlflow/runs/get': { run },
    '/api/2.0/mlflow/runs/search': { runs: [run], next_page_token: '' },
    '/api/2.0/mlflow/metrics/get-history': { metrics: run.data.metrics, next_page_token: '' },
    '/api/2.0/mlflow/model-versions/get': { model_version: version },
    '/api/2.0/mlflow/registered-models/get': { registered_model: { name: 'm', creation_timestamp: 1, last_updated_timestamp: 2, description: 'd', tags: [], aliases: [{ alias: 'champion', version: '1' }], latest_versions: [version] } },
    '/api/2.0/mlflow/registered-models/alias': { model_version: version },
    '/api/2.0/mlflow-artifacts/artifacts': { files: [{ path: '1/x/artifacts/model/model.onnx', is_dir: false, file_size: 16 }, { path: '1/x/artifacts/model/sub', is_dir: true }] },
  };

  it(`${Math.round(CASES / 5)} mutated answers to queries, registry calls and model downloads end in a result or one coded error`, async () => {
    const cases = Math.round(CASES / 5);
    let mutating = false;
    let r = rng(0x5eed7 ^ SEED);
    const server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      req.resume();
      const known = answers[path];
      if (path.startsWith('/api/2.0/mlflow-artifacts/artifacts/')) {  // a file download: not ONNX (that parser is fuzzed above)
        res.writeHead(200, { 'content-type': 'application/octet-stream' }).end('not an onnx file');
        return;
      }
      if (known === undefined) { res.writeHead(404, { 'content-type': 'application/json' }).end('{"error_code":"ENDPOINT_NOT_FOUND","message":"no"}'); return; }
      const body = Buffer.from(JSON.stringify(known));
      res.writeHead(200, { 'content-type': 'application/json' }).end(mutating ? mutate(body, r) : body);
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const uri = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const spool = tempDir('fuzz-mlflow-spool');
    const t = new MLflowTracker({ trackingUri: uri, dotenvPath: false, env: {}, handleSignals: false, spoolDir: spool, httpRequestMaxRetries: 0, httpRequestTimeoutS: 10 });
    const calls: [string, () => Promise<unknown>][] = [
      ['getRun', () => t.getRun(RUN)],
      ['searchRuns', () => t.searchRuns({ experimentIds: ['1'] })],
      ['getMetricHistory', () => t.getMetricHistory('loss', RUN)],
      ['getExperimentByName', () => t.getExperimentByName('fuzz')],
      ['searchExperiments', () => t.searchExperiments()],
      ['getModelVersion', () => t.getModelVersion('m', 1)],
      ['getRegisteredModel', () => t.getRegisteredModel('m')],
      ['getModelVersionByAlias', () => t.getModelVersionByAlias('m', 'champion')],
      ['loadModel runs:/', () => loadModel(`runs:/${RUN}/model`, { tracker: t, downloadDir: tempDir('fuzz-dl') })],
      ['loadModel models:/', () => loadModel('models:/m/1', { tracker: t })],
    ];
    try {
      await t.start();
      // the valid answers work
      expect((await t.getRun(RUN)).params).toEqual({ lr: '0.01' });
      expect((await t.getModelVersion('m', 1)).aliases).toEqual(['champion']);
      mutating = true;
      r = rng(0x5eed7 ^ SEED);
      const outcomes: Record<string, number> = {};
      for (let c = 0; c < cases; c++) {
        const [name, call] = calls[c % calls.length]!;
        const outcome = await withDeadline(call(), `MLflow answers case ${c} (${name}, seed ${0x5eed7 ^ SEED})`).then(() => 'ok', (e: unknown) => {
          if (!(e instanceof HeimdallError)) throw new Error(`MLflow answers case ${c} (${name}, seed ${0x5eed7 ^ SEED}): not a coded error: ${String(e)}`);
          return e.code;
        });
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      }
      expect(outcomes.ok).toBeGreaterThan(cases / 20);
      expect(outcomes.INTERNAL_ERROR, JSON.stringify(outcomes)).toBeGreaterThan(cases / 10);
    } finally {
      await t.close();
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    }
  }, 180_000);
});
