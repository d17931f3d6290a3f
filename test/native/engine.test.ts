import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { engineOptionsSchema } from '../../lib/config.js';
import { HeimdallError, isNativeErrorCode } from '../../lib/errors.js';
import { addonPath, native, type BatchEvent, type NativeEngine, type NativeEngineOptions } from '../../lib/native.js';
import { tempDir } from '../helpers/tmp.js';
import { blobDataset } from './fixtures.js';

const addon = native();
const cpu: NativeEngineOptions = { device: 'cpu', seed: 7, optimizer: { name: 'adamw', lr: 2e-3 }, threads: 2 };

async function trainLosses(epochs: number, seed = 7): Promise<number[]> {
  const model = new addon.Model({ variant: 'atto', head: 'regression', outputs: 2, seed });
  const engine = new addon.Engine(model, { ...cpu, seed });
  const data = blobDataset(96, 1);
  const losses: number[] = [];
  for (let e = 0; e < epochs; e++) {
    await engine.trainEpoch(data, { batchSize: 16, maxEpochs: epochs }, (ev) => losses.push(ev.metrics.loss!));
  }
  return losses;
}

/** One epoch of regression on a fixed blob set; returns the per-batch losses. */
async function trainer1Epoch(engine: NativeEngine): Promise<number[]> {
  const losses: number[] = [];
  await engine.trainEpoch(blobDataset(64, 4), { batchSize: 16, maxEpochs: 2 }, (e: BatchEvent) => losses.push(e.metrics.loss!));
  return losses;
}

describe('training engine (CPU)', () => {
  it('learns: the validation error of a blob-localisation task falls at least 3× in a few epochs', async () => {
    const model = new addon.Model({ variant: 'atto', head: 'localization', seed: 3 });
    const engine = new addon.Engine(model, { ...cpu, optimizer: { name: 'adamw', lr: 3e-3 }, schedule: { warmupSteps: 10 } });
    const train = blobDataset(512, 11);
    const val = blobDataset(128, 12);
    const before = await engine.evaluate(val, { batchSize: 64 });
    for (let e = 0; e < 6; e++) await engine.trainEpoch(train, { batchSize: 32, maxEpochs: 6 });
    const after = await engine.evaluate(val, { batchSize: 64 });
    expect(after.metrics.mae).toBeLessThan(before.metrics.mae! / 3);
    expect(after.metrics.loss).toBeLessThan(before.metrics.loss!);
    expect(engine.epoch).toBe(6);
    expect(engine.step).toBe(6 * 16);
  });

  it('is deterministic on CPU: the same seed gives the same per-batch losses', async () => {
    const a = await trainLosses(2);
    const b = await trainLosses(2);
    expect(a.length).toBe(12);
    expect(b).toEqual(a);
    const c = await trainLosses(2, 8);
    expect(c).not.toEqual(a);
  });

  it('resumes exactly: 2 epochs = 1 epoch + checkpoint + load + 1 epoch', async () => {
    const dir = tempDir();
    const data = blobDataset(80, 5);
    const opts: NativeEngineOptions = { ...cpu, gradClipNorm: 1.0, schedule: { warmupSteps: 3 } };
    const mk = () => new addon.Model({ variant: 'atto', head: 'localization', dropPathRate: 0.1, seed: 21 });

    const straight = new addon.Engine(mk(), opts);
    await straight.trainEpoch(data, { batchSize: 16, maxEpochs: 2 });
    const second: number[] = [];
    await straight.trainEpoch(data, { batchSize: 16, maxEpochs: 2 }, (e) => second.push(e.metrics.loss!));

    const first = new addon.Engine(mk(), opts);
    await first.trainEpoch(data, { batchSize: 16, maxEpochs: 2 });
    const ckpt = join(dir, 'epoch1.safetensors');
    await first.saveCheckpoint(ckpt, JSON.stringify({ callbacks: { note: 'kept' } }));

    const resumedModel = new addon.Model({ variant: 'atto', head: 'localization', dropPathRate: 0.1, seed: 999 });
    const resumed = new addon.Engine(resumedModel, opts);
    const user = await resumed.loadCheckpoint(ckpt);
    expect(JSON.parse(user)).toEqual({ callbacks: { note: 'kept' } });
    expect(resumed.epoch).toBe(1);
    expect(resumed.step).toBe(5);
    const resumedLosses: number[] = [];
    await resumed.trainEpoch(data, { batchSize: 16, maxEpochs: 2 }, (e) => resumedLosses.push(e.metrics.loss!));
    expect(resumedLosses.length).toBe(second.length);
    resumedLosses.forEach((l, i) => expect(Math.abs(l - second[i]!)).toBeLessThanOrEqual(1e-6));

    const probe = blobDataset(8, 99);
    const a = await straight.predict(probe);
    const b = await resumed.predict(probe);
    const pa = a.positions!.data, pb = b.positions!.data;
    let maxDiff = 0;
    for (let i = 0; i < pa.length; i++) maxDiff = Math.max(maxDiff, Math.abs(pa[i]! - pb[i]!));
    expect(maxDiff).toBeLessThanOrEqual(1e-6);
  });

  it('stops at a batch boundary when asked, leaving a usable model', async () => {
    const model = new addon.Model({ variant: 'atto', head: 'localization', seed: 1 });
    const engine = new addon.Engine(model, cpu);
    const events: BatchEvent[] = [];
    const result = await engine.trainEpoch(blobDataset(160, 2), { batchSize: 16, maxEpochs: 1 }, (e) => {
      events.push(e);
      if (e.batch === 2) engine.requestStop();
    });
    expect(result.stopped).toBe(true);
    expect(result.batches).toBeGreaterThanOrEqual(3);
    expect(result.batches).toBeLessThan(10);
    expect(engine.epoch).toBe(0); // the epoch did not complete
    engine.clearStop();
    const out = await engine.predict(blobDataset(4, 3));
    expect(Array.from(out.positions!.data).every(Number.isFinite)).toBe(true);
    expect(out.uncertainties!.shape).toEqual([4, 2]);
  });

  it('a checkpoint that resumes past the end of this data\'s epoch is refused (another batch size, or a crafted count)', async () => {
    const model = new addon.Model({ variant: 'atto', head: 'localization', seed: 1 });
    const engine = new addon.Engine(model, cpu);
    await engine.trainEpoch(blobDataset(160, 2), { batchSize: 16, maxEpochs: 1 }, (e) => {
      if (e.batch === 6) engine.requestStop();
    });
    const ckpt = join(tempDir(), 'mid-epoch.safetensors');
    await engine.saveCheckpoint(ckpt);
    const resumed = new addon.Engine(new addon.Model({ variant: 'atto', head: 'localization', seed: 1 }), cpu);
    await resumed.loadCheckpoint(ckpt);
    // batch ≥ 7 of an epoch that has 3 batches of 64 here: before, the loader skipped past its end silently.
    await expect(resumed.trainEpoch(blobDataset(160, 2), { batchSize: 64, maxEpochs: 1 })).rejects.toMatchObject({
      code: 'HEIMDALL_INVALID_STATE',
      message: expect.stringMatching(/resumes at batch \d+ of an epoch that has 3 batches here/),
    });
  });

  it('a damaged training state is refused before anything changes: weights, optimizer, RNG and counters stay as they were', async () => {
    const trained = new addon.Engine(new addon.Model({ variant: 'atto', head: 'regression', outputs: 2, seed: 5 }), cpu);
    await trainer1Epoch(trained);
    const good = join(tempDir(), 'good.safetensors');
    await trained.saveCheckpoint(good);
    // The same file with its training state rewritten: a field missing, a negative counter.
    const craft = (edit: (state: Record<string, unknown>) => void) => {
      const bytes = readFileSync(good);
      const n = Number(bytes.readBigUInt64LE(0));
      const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as { __metadata__: Record<string, string> };
      const state = JSON.parse(header.__metadata__['heimdall.checkpoint']!) as Record<string, unknown>;
      edit(state);
      header.__metadata__['heimdall.checkpoint'] = JSON.stringify(state);
      const h = Buffer.from(JSON.stringify(header), 'utf8');
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(h.length));
      const path = join(tempDir(), 'crafted.safetensors');
      writeFileSync(path, Buffer.concat([len, h, bytes.subarray(8 + n)]));
      return path;
    };
    const fresh = new addon.Engine(new addon.Model({ variant: 'atto', head: 'regression', outputs: 2, seed: 6 }), cpu);
    const probe = blobDataset(4, 9);
    const before = (await fresh.predict(probe)).outputs!.data;
    for (const [bad, why] of [[craft((s) => delete s.step), /cannot be read/], [craft((s) => (s.epoch = -3)), /negative counters/]] as const) {
      await expect(fresh.loadCheckpoint(bad)).rejects.toMatchObject({ code: 'HEIMDALL_BAD_FILE', message: expect.stringMatching(why) });
      await expect(fresh.loadCheckpoint(bad)).rejects.toThrow(bad);
      expect([fresh.epoch, fresh.step]).toEqual([0, 0]);
      expect(Array.from((await fresh.predict(probe)).outputs!.data)).toEqual(Array.from(before)); // weights untouched
    }
    // The losses of the next epoch equal a fresh engine's: the optimizer and the RNG were not touched either.
    const untouched = new addon.Engine(new addon.Model({ variant: 'atto', head: 'regression', outputs: 2, seed: 6 }), cpu);
    expect(await trainer1Epoch(fresh)).toEqual(await trainer1Epoch(untouched));
  });

  it('keeps the event loop free: timers fire between batch events of a running epoch', async () => {
    const model = new addon.Model({ variant: 'atto', head: 'localization', seed: 1 });
    const engine = new addon.Engine(model, cpu);
    const timeline: string[] = [];
    const timer = setInterval(() => timeline.push('tick'), 5);
    try {
      await engine.trainEpoch(blobDataset(256, 4, 64), { batchSize: 16, maxEpochs: 1 }, () => timeline.push('batch'));
    } finally {
      clearInterval(timer);
    }
    const firstBatch = timeline.indexOf('batch');
    const lastBatch = timeline.lastIndexOf('batch');
    const ticksDuring = timeline.slice(firstBatch, lastBatch).filter((t) => t === 'tick').length;
    expect(timeline.filter((t) => t === 'batch').length).toBe(16);
    expect(ticksDuring).toBeGreaterThan(3);
  });

  it('reports batch events with loss, lr, step and throughput; the cosine schedule decays to minLr', async () => {
    const model = new addon.Model({ variant: 'atto', head: 'classification', outputs: 4, seed: 1 });
    const engine = new addon.Engine(model, {
      ...cpu,
      optimizer: { name: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true },
      schedule: { name: 'cosine', warmupSteps: 2, minLr: 1e-4 },
    });
    const n = 64;
    const inputs = new Float32Array(n * 3 * 32 * 32).map((_, i) => Math.sin(i));
    const labels = new Int32Array(n).map((_, i) => i % 4);
    const data = addon.tensorDataset(inputs, [n, 3, 32, 32], labels, [n]);
    const events: BatchEvent[] = [];
    await engine.trainEpoch(data, { batchSize: 16, maxEpochs: 2 }, (e) => events.push(e));
    await engine.trainEpoch(data, { batchSize: 16, maxEpochs: 2 }, (e) => events.push(e));
    expect(events.map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(events[0]!.lr).toBeCloseTo(0.05, 10); // warmup 1/2
    expect(events[1]!.lr).toBeCloseTo(0.1, 10);
    expect(events[7]!.lr).toBeLessThan(0.02);
    expect(engine.lr).toBeCloseTo(1e-4, 10);
    for (const e of events) {
      expect(Number.isFinite(e.metrics.loss)).toBe(true);
      expect(e.metrics.accuracy).toBeGreaterThanOrEqual(0);
      expect(e.samplesPerSec).toBeGreaterThan(0);
    }
  });

  it('accumulates gradients: accumulate=2 takes one optimizer step per two batches', async () => {
    const model = new addon.Model({ variant: 'atto', head: 'regression', outputs: 2, seed: 1 });
    const engine = new addon.Engine(model, { ...cpu, accumulate: 2 });
    const r = await engine.trainEpoch(blobDataset(80, 1), { batchSize: 16, maxEpochs: 1 });
    expect(r.batches).toBe(5);
    expect(engine.step).toBe(3); // 2 + 2 + the last odd batch
  });
});

describe('engine errors', () => {
  it('names expected and actual shapes when the data does not fit the model', async () => {
    const model = new addon.Model({ variant: 'atto', inChans: 3, head: 'localization' });
    const engine = new addon.Engine(model, cpu);
    const n = 4;
    const data = addon.tensorDataset(new Float32Array(n * 7 * 64 * 32), [n, 7, 64, 32], new Float32Array(n * 2), [n, 2]);
    await expect(engine.trainEpoch(data, { batchSize: 2, maxEpochs: 1 })).rejects.toMatchObject({
      code: 'HEIMDALL_SHAPE_MISMATCH',
      message: expect.stringMatching(/\[7, 64, 32\].*inChans 3 needs \[3, H ≥ 32, W ≥ 32\]/),
    });
  });

  it('refuses batches of one sample for the localization head (BatchNorm) with what to do, not libtorch\'s error', async () => {
    // issue 14, finding 14
    const engine = new addon.Engine(new addon.Model({ variant: 'atto', head: 'localization', seed: 2 }), cpu);
    await expect(engine.trainEpoch(blobDataset(8, 1), { batchSize: 1, maxEpochs: 1 })).rejects.toMatchObject({
      code: 'HEIMDALL_INVALID_ARGUMENT', message: expect.stringContaining('use batchSize ≥ 2'),
    });
    await expect(engine.trainEpoch(blobDataset(1, 1), { batchSize: 8, maxEpochs: 1 })).rejects.toMatchObject({
      code: 'HEIMDALL_INVALID_ARGUMENT', message: expect.stringMatching(/holds 1 sample .*use more samples/),
    });
    // the same engine trains once the data allows it
    const r = await engine.trainEpoch(blobDataset(8, 1), { batchSize: 4, maxEpochs: 1 });
    expect(r.batches).toBe(2);
  });

  it('stops with an error naming the step when the loss is not finite, keeping the weights', async () => {
    const model = new addon.Model({ variant: 'atto', head: 'regression', outputs: 2 });
    const engine = new addon.Engine(model, cpu);
    const n = 8;
    const data = addon.tensorDataset(new Float32Array(n * 3 * 32 * 32).fill(0.5), [n, 3, 32, 32], new Float32Array(n * 2).fill(3e38), [n, 2]);
    await expect(engine.trainEpoch(data, { batchSize: 4, maxEpochs: 1 })).rejects.toMatchObject({
      code: 'HEIMDALL_NON_FINITE_LOSS',
      message: expect.stringMatching(/loss is infinite at step 0 \(epoch 0, batch 0\)/),
    });
    expect(engine.step).toBe(0);
  });

  it('rejects NaN inputs when the data set is built', () => {
    const inputs = new Float32Array(2 * 3 * 32 * 32);
    inputs[5] = Number.NaN;
    expect(() => addon.tensorDataset(inputs, [2, 3, 32, 32])).toThrow(/NaN or Inf/);
  });

  it('says so when CUDA is asked for and there is none', () => {
    const info = addon.torchInfo();
    if (info.cudaAvailable) return; // on a GPU machine the CUDA suite covers this path
    const model = new addon.Model({ variant: 'atto' });
    expect(() => new addon.Engine(model, { device: 'cuda' })).toThrow(
      expect.objectContaining({ code: 'HEIMDALL_DEVICE_UNAVAILABLE', message: expect.stringMatching(/no CUDA device/) }),
    );
    expect(() => new addon.Engine(model, { device: 'gpu' })).toThrow(/device: must be auto, cpu, cuda or cuda:N/);
  });

  it("the addon's errors are HeimdallErrors with their code, thrown or rejected", async () => {
    const inputs = new Float32Array(2 * 3 * 32 * 32).fill(Number.NaN);
    let thrown: unknown;
    try {
      addon.tensorDataset(inputs, [2, 3, 32, 32]);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(HeimdallError);
    expect(isNativeErrorCode((thrown as HeimdallError).code)).toBe(true);
    const engine = new addon.Engine(new addon.Model({ variant: 'atto', head: 'localization' }), cpu);
    const rejected = await engine.loadCheckpoint(join(tempDir(), 'none.safetensors')).catch((e: unknown) => e);
    expect(rejected).toBeInstanceOf(HeimdallError);
    expect(rejected).toMatchObject({ code: 'HEIMDALL_BAD_FILE' });
    await expect(Promise.resolve().then(() => addon.Model.create({ variant: 'convnext_huge' }))).rejects.toMatchObject({ name: 'HeimdallError', code: 'HEIMDALL_UNKNOWN_VARIANT' });
  });

  it('gets complete options: the binding takes no defaults of its own and names a missing field', () => {
    const raw = createRequire(import.meta.url)(addonPath()) as { Engine: new (m: unknown, o: object) => unknown };
    const model = new addon.Model({ variant: 'atto', head: 'localization' });
    expect(() => new raw.Engine(model, { device: 'cpu' })).toThrow(
      expect.objectContaining({ code: 'HEIMDALL_INVALID_ARGUMENT', message: expect.stringMatching(/^engine option loss is missing/) }),
    );
    const complete = engineOptionsSchema.parse({ device: 'cpu' });
    const { optimizer: { dampening: _, ...optimizer }, ...rest } = complete;
    expect(() => new raw.Engine(model, { ...rest, optimizer })).toThrow(/engine option optimizer\.dampening is missing/);
    expect(() => new raw.Engine(model, complete)).not.toThrow();
    expect(complete.optimizer).toMatchObject({ name: 'adamw', lr: 1e-3, weightDecay: 1e-5, dampening: 0 });
  });

  it('refuses a second operation while one is running', async () => {
    const model = new addon.Model({ variant: 'atto', head: 'localization' });
    const engine = new addon.Engine(model, cpu);
    const data = blobDataset(32, 1);
    const first = engine.trainEpoch(data, { batchSize: 8, maxEpochs: 1 });
    expect(() => engine.evaluate(data)).toThrow(expect.objectContaining({ code: 'HEIMDALL_INVALID_STATE' }));
    await first;
  });

  it('rejects a checkpoint of another variant, and a file that is not a checkpoint', async () => {
    const dir = tempDir();
    const tiny = new addon.Engine(new addon.Model({ variant: 'femto', head: 'localization' }), cpu);
    const path = join(dir, 'femto.safetensors');
    await tiny.saveCheckpoint(path);
    const atto = new addon.Engine(new addon.Model({ variant: 'atto', head: 'localization' }), cpu);
    await expect(atto.loadCheckpoint(path)).rejects.toMatchObject({
      code: 'HEIMDALL_WEIGHTS_MISMATCH',
      message: expect.stringMatching(/checkpoint of convnext_femto .* this model is convnext_atto/),
    });
    const junk = join(dir, 'junk.safetensors');
    writeFileSync(junk, Buffer.from('not a checkpoint at all'));
    await expect(atto.loadCheckpoint(junk)).rejects.toMatchObject({ code: 'HEIMDALL_BAD_FILE', message: expect.stringContaining(junk) });
  });
});
