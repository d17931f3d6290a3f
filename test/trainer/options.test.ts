// Trainer options Lightning users reach for daily (issue 17): maxTime / Timer, minEpochs, logEveryNSteps,
// OnExceptionCheckpoint, ModelSummary — each against Lightning's documented semantics.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/config.js';
import { ConvNeXt } from '../../lib/model.js';
import { HeimdallDataModule } from '../../lib/data/heimdall.js';
import { BackboneFinetuning, BasePredictionWriter, Callback, CsvPredictionWriter, StochasticWeightAveraging, EarlyStopping, EMAWeightAveraging, GradientAccumulationScheduler, MLflowLogger, ThroughputMonitor, flopsPerSample, peakFlops, ModelCheckpoint, ModelSummary, OnExceptionCheckpoint, TensorDataModule, Timer, Trainer, formatDuration, suggestIndex, valleyIndex, summarize, type TrainBatch } from '../../lib/trainer/index.js';
import { resolveTrainFlags, trainCommand } from '../../lib/cli/train.js';
import { python } from '../helpers/python.js';
import { tempDir } from '../helpers/tmp.js';
import { blobs } from '../native/fixtures.js';

function blobData(n = 120, seed = 1, batchSize = 16): TensorDataModule {
  const { inputs, targets } = blobs(n, seed);
  return new TensorDataModule(inputs, [n, 3, 32, 32], targets, [n, 2], { batchSize, seed: 3 });
}
const base = { device: 'cpu', threads: 2, enableProgressBar: false, enableModelSummary: false, handleSignals: false, optimizer: { name: 'adamw' as const, lr: 2e-3, weightDecay: 1e-5 } };

const ModelCheckpointFor = (root: string) => new ModelCheckpoint({ dirpath: join(root, 'checkpoints') });

/** Records every training batch with the time its event reached JavaScript. */
class BatchClock extends Callback {
  readonly batches: { epoch: number; batch: number; step: number; at: number }[] = [];
  override onTrainBatchEnd(_t: unknown, b: TrainBatch) { this.batches.push({ epoch: b.epoch, batch: b.batch, step: b.step, at: Date.now() }); }
}

describe('maxTime and Timer', () => {
  it('parses durations as Lightning does: DD:HH:MM:SS or { days, hours, minutes, seconds }', () => {
    expect(new Trainer({ ...base, maxTime: '00:12:00:00' }).config.maxTime).toBe(12 * 3600 * 1000);
    expect(new Trainer({ ...base, maxTime: { hours: 1, minutes: 30 } }).config.maxTime).toBe(5400 * 1000);
    expect(() => new Trainer({ ...base, maxTime: '12h' })).toThrow(ConfigError);
    expect(() => new Trainer({ ...base, maxTime: { hours: 0 } })).toThrow(/maxTime: must be longer than 0 s/);
    expect(formatDuration(90061000)).toBe('01:01:01:01');
  });

  it('stops at the batch boundary after the limit, writes a checkpoint, and a resumed fit continues that epoch', async () => {
    const dir = tempDir();
    const clock = new BatchClock();
    const timer = new Timer({ duration: { seconds: 1.5 }, verbose: false });
    let started = 0;
    class Start extends Callback { override onTrainStart() { started = Date.now(); } }
    const trainer = new Trainer({ ...base, maxEpochs: 500, defaultRootDir: dir, callbacks: [new Start(), clock, timer] });
    const history = await trainer.fit(ConvNeXt.localization('atto', { seed: 3 }), blobData(400, 3, 8));
    expect(history.reason).toBe('max_time');
    expect(timer.expired).toBe(true);
    const limit = started + 1500;
    expect(clock.batches.at(-1)!.at).toBeGreaterThanOrEqual(limit);
    // The stop lands at a batch boundary: at most the batch already running when the limit was seen, and one more.
    expect(clock.batches.filter((b) => b.at >= limit).length).toBeLessThanOrEqual(2);
    expect(history.globalStep).toBe(clock.batches.at(-1)!.step);
    expect(timer.timeElapsed()).toBeGreaterThanOrEqual(1.5);

    // 400 samples → ~34 batches of 8 per epoch: the limit almost surely falls inside an epoch.
    const last = clock.batches.at(-1)!;
    const midEpoch = last.batch + 1 < trainer.trainBatches;
    expect(Boolean(history.resumeCheckpoint)).toBe(midEpoch);
    if (!history.resumeCheckpoint) return;
    expect(existsSync(history.resumeCheckpoint)).toBe(true);

    const clock2 = new BatchClock();
    const timer2 = new Timer({ verbose: false }); // no limit: measures only, restores the elapsed time
    const resumed = new Trainer({ ...base, maxEpochs: last.epoch + 1, defaultRootDir: tempDir(), callbacks: [clock2, timer2] });
    const h2 = await resumed.fit(ConvNeXt.localization('atto', { seed: 3 }), blobData(400, 3, 8), { ckptPath: history.resumeCheckpoint });
    expect(h2.reason).toBe('max_epochs');
    expect(clock2.batches[0]).toMatchObject({ epoch: last.epoch, batch: last.batch + 1, step: last.step + 1 });
    expect(h2.epochs.map((e) => e.epoch)).toEqual([last.epoch]);
    expect(timer2.timeElapsed()).toBeGreaterThan(timer.timeElapsed());
  });

  it("interval 'epoch' ends fit after the epoch in which the time ran out", async () => {
    const timer = new Timer({ duration: { seconds: 0.01 }, interval: 'epoch', verbose: false });
    const trainer = new Trainer({ ...base, maxEpochs: 5, defaultRootDir: tempDir(), callbacks: [timer] });
    const history = await trainer.fit(ConvNeXt.localization('atto', { seed: 4 }), blobData(60, 4));
    expect(history.epochs.map((e) => e.epoch)).toEqual([0]);
    expect(history.reason).toBe('stopped');
    expect(history.resumeCheckpoint).toBeUndefined();
  });
});

describe('minEpochs', () => {
  it('keeps training until minEpochs when EarlyStopping asks to stop earlier (Lightning: min_epochs wins)', async () => {
    // After the first validation (which sets the best), no validation is an improvement: stop after epoch 1.
    const never = () => new EarlyStopping({ patience: 0, minDelta: 1e9 });
    const plain = new Trainer({ ...base, maxEpochs: 6, defaultRootDir: tempDir(), callbacks: [never()] });
    const h1 = await plain.fit(ConvNeXt.localization('atto', { seed: 5 }), blobData(60, 5));
    expect(h1.epochs.length).toBe(2);
    const withMin = new Trainer({ ...base, maxEpochs: 6, minEpochs: 4, defaultRootDir: tempDir(), callbacks: [never()] });
    const h2 = await withMin.fit(ConvNeXt.localization('atto', { seed: 5 }), blobData(60, 5));
    expect(h2.epochs.map((e) => e.epoch)).toEqual([0, 1, 2, 3]);
    expect(h2.reason).toBe('stopped');
  });

  it('minSteps counts optimizer steps', async () => {
    const trainer = new Trainer({ ...base, maxEpochs: 6, minSteps: 7, defaultRootDir: tempDir(), callbacks: [new EarlyStopping({ patience: 0, minDelta: 1e9 })] });
    const h = await trainer.fit(ConvNeXt.localization('atto', { seed: 6 }), blobData(60, 6)); // 3 steps per epoch
    expect(h.epochs.length).toBe(3); // EarlyStopping asks after epoch 1 (6 steps); 9 ≥ 7 after epoch 2
    expect(h.globalStep).toBe(9);
  });
});

describe('logEveryNSteps', () => {
  it('logs batch metrics every N optimizer steps (default 50, as Lightning), epoch metrics every epoch', async () => {
    const dir = tempDir();
    const trackingUri = `sqlite:///${join(dir, 'mlflow.db')}`;
    const steps = async (trainerOptions: object) => {
      const logger = new MLflowLogger({ trackerOptions: { trackingUri, artifactUri: join(dir, 'artifacts') }, logCheckpoints: false });
      const trainer = new Trainer({ ...base, maxEpochs: 2, defaultRootDir: tempDir(), logger, ...trainerOptions });
      await trainer.fit(ConvNeXt.localization('atto', { seed: 7 }), blobData(120, 7, 8)); // 12 steps per epoch
      await logger.close();
      return JSON.parse(await python(`
import sys, json, mlflow
c = mlflow.MlflowClient(sys.argv[1])
print(json.dumps({k: [m.step for m in c.get_metric_history(sys.argv[2], k)] for k in ('train/loss', 'train/loss_epoch')}))`, [trackingUri, logger.runId!])) as Record<string, number[]>;
    };
    const every5 = await steps({ logEveryNSteps: 5 });
    expect(every5['train/loss']).toEqual([5, 10, 15, 20]);
    expect(every5['train/loss_epoch']!.length).toBe(2);
    const byDefault = await steps({});
    expect(byDefault['train/loss']).toEqual([]);
    expect(byDefault['train/loss_epoch']!.length).toBe(2);
  });
});

describe('OnExceptionCheckpoint', () => {
  it('saves a resumable checkpoint when fit fails, and fit still rejects with the original error', async () => {
    const dir = tempDir();
    class FailAfterFirstEpoch extends Callback {
      override onTrainEpochEnd(t: Trainer) { if (t.currentEpoch === 1) throw new Error('disk quota exceeded (test)'); }
    }
    const saver = new OnExceptionCheckpoint();
    const trainer = new Trainer({ ...base, maxEpochs: 3, defaultRootDir: dir, callbacks: [new FailAfterFirstEpoch(), saver] });
    await expect(trainer.fit(ConvNeXt.localization('atto', { seed: 8 }), blobData(60, 8))).rejects.toThrow('disk quota exceeded (test)');
    expect(saver.savedPath).toBe(join(dir, 'checkpoints', 'on_exception.safetensors'));
    expect(existsSync(saver.savedPath!)).toBe(true);
    const resumed = new Trainer({ ...base, maxEpochs: 3, defaultRootDir: tempDir() });
    const h = await resumed.fit(ConvNeXt.localization('atto', { seed: 8 }), blobData(60, 8), { ckptPath: saver.savedPath });
    expect(h.epochs.map((e) => e.epoch)).toEqual([1, 2]);
  });

  it('refuses a path as its file name', () => {
    expect(() => new OnExceptionCheckpoint({ filename: '../x' })).toThrow(/filename: must be a file name/);
  });
});

describe('ModelSummary', () => {
  it('lists the modules with parameter counts and output sizes that match timm and libtorch', async () => {
    const model = ConvNeXt.localization('atto', { seed: 9 });
    await model.ready();
    const s = summarize(model, [3, 64, 96]);
    expect(s.rows.map((r) => r.name)).toEqual(['stem', 'stages.0', 'stages.1', 'stages.2', 'stages.3', 'head.norm', 'position_head', 'uncertainty_head']);
    expect(s.rows.reduce((a, r) => a + r.params, 0)).toBe(model.numParameters());
    expect(s.total).toBe(model.numParameters());
    expect(s.trainable).toBe(model.numParameters(true));
    // The reference: timm's convnext_atto, its modules' parameters and output shapes for a [2, 3, 64, 96] input.
    const ref = JSON.parse(await python(`
import json, torch, timm
m = timm.create_model('convnext_atto', pretrained=False, num_classes=0).eval()
shapes = {}
for name in ['stem'] + [f'stages.{i}' for i in range(4)]:
    m.get_submodule(name).register_forward_hook(lambda mod, i, o, name=name: shapes.__setitem__(name, list(o.shape)))
m(torch.zeros(2, 3, 64, 96))
print(json.dumps({n: {'params': sum(p.numel() for p in m.get_submodule(n).parameters()), 'shape': shapes[n]} for n in shapes}))`)) as Record<string, { params: number; shape: number[] }>;
    for (const row of s.rows.slice(0, 5)) {
      expect(row.params).toBe(ref[row.name]!.params);
      expect(row.outSize).toEqual(['B', ...ref[row.name]!.shape.slice(1)]);
    }
    expect(s.rows.find((r) => r.name === 'position_head')!.outSize).toEqual(['B', 2]);
  });

  it('prints the table at fit start (on by default, off with enableModelSummary: false)', async () => {
    let printed = '';
    const summary = new ModelSummary({ write: (t) => (printed += t) });
    const trainer = new Trainer({ ...base, enableModelSummary: true, maxEpochs: 1, defaultRootDir: tempDir(), callbacks: [summary] });
    await trainer.fit(ConvNeXt.localization('atto', { seed: 10 }), blobData(40, 10));
    expect(printed).toMatch(/stages\.3 +\| Stage \(downsample, 2 blocks\) +\| 1\.9 M +\| \[B, 320, 1, 1\]/);
    expect(printed).toMatch(/3\.5 M +Total params/);
    expect(new Trainer({ ...base, enableModelSummary: true }).callbacks.filter((c) => c instanceof ModelSummary).length).toBe(1);
    expect(new Trainer({ ...base, enableModelSummary: false }).callbacks.some((c) => c instanceof ModelSummary)).toBe(false);
  });
});

describe('CLI flags', () => {
  const flagsOf = (args: string[]) => {
    const cmd = trainCommand().exitOverride();
    cmd.action(() => undefined);
    cmd.parse(args, { from: 'user' });
    return resolveTrainFlags(cmd);
  };
  it('--max-time, --min-epochs, --log-every-n-steps, --no-model-summary reach the Trainer options', () => {
    const f = flagsOf(['--max-time', '00:02:30:00', '--min-epochs', '4', '--log-every-n-steps', '10', '--no-model-summary']);
    expect(f).toMatchObject({ maxTime: 9000 * 1000, minEpochs: 4, logEveryNSteps: 10, modelSummary: false });
    expect(flagsOf([])).toMatchObject({ minEpochs: 0, logEveryNSteps: 50, modelSummary: true });
    expect(() => flagsOf(['--max-time', '2h'])).toThrow(/--max-time: must be 'DD:HH:MM:SS'/);
  });
});

describe('batch limits, maxSteps, sanity check, fastDevRun', () => {
  it('the engine: trainEpoch maxBatches / maxSteps (resumable mid-epoch, schedule spans maxSteps), evaluate maxBatches', async () => {
    const { native } = await import('../../lib/native.js');
    const { blobDataset } = await import('../native/fixtures.js');
    const addon = native();
    const mk = () => new addon.Engine(new addon.Model({ variant: 'atto', head: 'regression', outputs: 2, seed: 1 }),
      { device: 'cpu', seed: 1, threads: 2, optimizer: { name: 'adamw', lr: 1e-3 }, schedule: { name: 'cosine', minLr: 1e-5 } });
    const data = blobDataset(64, 2); // 8 batches of 8
    const e1 = mk();
    const a = await e1.trainEpoch(data, { batchSize: 8, maxEpochs: 3, maxBatches: 3 });
    expect(a).toMatchObject({ batches: 3, samples: 24, step: 3, stopped: false, maxStepsReached: false });
    expect(e1.epoch).toBe(1);
    const v = await e1.evaluate(data, { batchSize: 8, maxBatches: 2 });
    expect(v).toMatchObject({ batches: 2, samples: 16 });
    expect((await e1.evaluate(data, { batchSize: 8 })).batches).toBe(8);

    const e2 = mk();
    const events: number[] = [];
    const b = await e2.trainEpoch(data, { batchSize: 8, maxEpochs: 10, maxSteps: 5 }, (ev) => events.push(ev.step));
    expect(b).toMatchObject({ batches: 5, step: 5, stopped: false, maxStepsReached: true });
    expect(events).toEqual([1, 2, 3, 4, 5]);
    expect(e2.epoch).toBe(0); // the epoch is not over: it resumes at batch 5
    expect(e2.lr).toBeCloseTo(1e-5, 8); // the cosine schedule spans min(10 epochs × 8, 5) steps: at its end
    const again = await e2.trainEpoch(data, { batchSize: 8, maxEpochs: 10, maxSteps: 7 }, (ev) => events.push(ev.step));
    expect(again).toMatchObject({ batches: 7, step: 7, maxStepsReached: true });
    const rest = await e2.trainEpoch(data, { batchSize: 8, maxEpochs: 10 });
    expect(rest).toMatchObject({ batches: 8, step: 8, maxStepsReached: false });
    expect(e2.epoch).toBe(1);
    expect(() => e2.trainEpoch(data, { batchSize: 8, maxEpochs: 10, maxBatches: 0 })).toThrow(/maxBatches must be ≥ 1/);
  });

  it('limitTrainBatches (count or fraction) and limitValBatches: 0 (no validation)', async () => {
    const clock = new BatchClock();
    const trainer = new Trainer({ ...base, maxEpochs: 3, limitTrainBatches: 2, limitValBatches: 0, defaultRootDir: tempDir(), callbacks: [clock] });
    const h = await trainer.fit(ConvNeXt.localization('atto', { seed: 11 }), blobData(120, 11, 8)); // 12 batches per epoch
    expect(clock.batches.map((b) => `${b.epoch}.${b.batch}`)).toEqual(['0.0', '0.1', '1.0', '1.1', '2.0', '2.1']);
    expect(h.globalStep).toBe(6);
    expect(h.epochs.every((e) => e.val === undefined)).toBe(true);
    const half = new Trainer({ ...base, maxEpochs: 1, limitTrainBatches: 0.5, defaultRootDir: tempDir() });
    const data = blobData(120, 11, 8);
    const all = Math.ceil((await data.setup()).train.size / 8); // 86 training samples → 11 batches
    expect((await half.fit(ConvNeXt.localization('atto', { seed: 11 }), data)).globalStep).toBe(Math.floor(all / 2));
    expect(() => new Trainer({ ...base, limitTrainBatches: 1.5 })).toThrow(/limitTrainBatches: must be a whole number of batches/);
    expect(() => new Trainer({ ...base, limitTrainBatches: 0 })).toThrow(/limitTrainBatches: 0 leaves nothing to train/);
  });

  it('maxSteps ends fit at that step with a checkpoint to resume the epoch from', async () => {
    const trainer = new Trainer({ ...base, maxEpochs: 10, maxSteps: 5, defaultRootDir: tempDir() });
    const h = await trainer.fit(ConvNeXt.localization('atto', { seed: 12 }), blobData(60, 12)); // 3 steps per epoch
    expect(h).toMatchObject({ reason: 'max_steps', globalStep: 5 });
    expect(h.epochs.length).toBe(1);
    expect(existsSync(h.resumeCheckpoint!)).toBe(true);
    const clock = new BatchClock();
    const resumed = new Trainer({ ...base, maxEpochs: 10, maxSteps: 6, defaultRootDir: tempDir(), callbacks: [clock] });
    const h2 = await resumed.fit(ConvNeXt.localization('atto', { seed: 12 }), blobData(60, 12), { ckptPath: h.resumeCheckpoint });
    expect(clock.batches.map((b) => b.step)).toEqual([6]);
    expect(h2).toMatchObject({ reason: 'max_steps', globalStep: 6 });
    expect(h2.epochs.map((e) => e.epoch)).toEqual([1]); // epoch 1 completed at step 6, validated
    expect(h2.resumeCheckpoint).toBeUndefined();
  });

  it('numSanityValSteps runs validation batches before training: a broken validation fails before any training step', async () => {
    const good = blobData(60, 13);
    const { inputs, targets } = blobs(20, 13);
    const small = new TensorDataModule(inputs.subarray(0, 20 * 3 * 16 * 16), [20, 3, 16, 16], targets, [20, 2], { batchSize: 16, split: false });
    const broken = { batchSize: 16, describe: () => 'val of 16×16 inputs', setup: async () => ({ train: (await good.setup()).train, val: (await small.setup()).train }) };
    const clock = new BatchClock();
    const checked = new Trainer({ ...base, maxEpochs: 1, defaultRootDir: tempDir(), callbacks: [clock] });
    await expect(checked.fit(ConvNeXt.localization('atto', { seed: 13 }), broken)).rejects.toThrow(/32/);
    expect(clock.batches.length).toBe(0);
    const unchecked = new Trainer({ ...base, maxEpochs: 1, numSanityValSteps: 0, defaultRootDir: tempDir(), callbacks: [clock] });
    await expect(unchecked.fit(ConvNeXt.localization('atto', { seed: 13 }), broken)).rejects.toThrow(/32/);
    expect(clock.batches.length).toBeGreaterThan(0); // without the check, an epoch of training came first
  });

  it('fastDevRun: n batches of train, val and test, no files, no MLflow run, one report line', async () => {
    const dir = tempDir();
    const root = join(dir, 'outputs');
    const db = join(dir, 'mlflow.db');
    const logger = new MLflowLogger({ trackerOptions: { trackingUri: `sqlite:///${db}`, artifactUri: join(dir, 'artifacts') } });
    const clock = new BatchClock();
    const trainer = new Trainer({ ...base, maxEpochs: 5, fastDevRun: 2, defaultRootDir: root, logger, callbacks: [clock, ModelCheckpointFor(root), new EarlyStopping()] });
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => (out.push(String(chunk)), true)) as typeof process.stdout.write;
    let h;
    try {
      h = await trainer.fit(ConvNeXt.localization('atto', { seed: 14 }), blobData(120, 14, 8));
      await trainer.test();
    } finally {
      process.stdout.write = write;
    }
    await logger.close();
    expect(h.globalStep).toBe(2);
    expect(h.epochs.length).toBe(1);
    expect(clock.batches.length).toBe(2);
    expect(h.epochs[0]!.val!['val/loss']).toBeTypeOf('number');
    expect(out.join('')).toMatch(/fastDevRun passed: 2 training step\(s\), train\/loss [\d.-]+, val\/loss [\d.-]+ in/);
    expect(existsSync(root)).toBe(false);
    expect(existsSync(db)).toBe(false);
    expect(logger.runId).toBeNull();
  });
});

describe('lrFind', () => {
  it("suggestIndex is Lightning's: argmin of torch.gradient(losses, spacing=[lrs]) between skipBegin and skipEnd", async () => {
    const lrs = Array.from({ length: 40 }, (_, i) => 1e-6 * 10 ** (i / 8));
    const losses = lrs.map((lr, i) => 2 - Math.tanh(Math.log10(lr) + 3) + 0.01 * Math.sin(i * 1.7) + (lr > 0.05 ? 5 * lr : 0));
    const ref = Number(await python(`
import sys, json, torch
lrs = torch.tensor(json.loads(sys.argv[1]), dtype=torch.float64)
losses = torch.tensor(json.loads(sys.argv[2]), dtype=torch.float64)
print(int(torch.argmin(torch.gradient(losses[10:-1], spacing=[lrs[10:-1]])[0])) + 10)`, [JSON.stringify(lrs), JSON.stringify(losses)]));
    expect(suggestIndex(lrs, losses)).toBe(ref);
    expect(suggestIndex(lrs.slice(0, 12), losses.slice(0, 12))).toBeUndefined(); // one usable point
  });

  it("valleyIndex is fastai's valley (the default): the middle of the longest falling stretch", async () => {
    const curves = [0, 1, 2, 3].map((seed) => Array.from({ length: 80 }, (_, i) => 2 - Math.tanh((i - 40) / 8) + 0.05 * Math.sin(i * (1.3 + seed)) + (i > 65 ? 0.2 * (i - 65) : 0)));
    const ref = JSON.parse(await python(`
import sys, json
def valley(losses):  # fastai.callback.schedule.valley (fastai 2.7), the index it returns
    n = len(losses); max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)
print(json.dumps([valley(c) for c in json.loads(sys.argv[1])]))`, [JSON.stringify(curves)]));
    expect(curves.map((c) => valleyIndex(c))).toEqual(ref);
    expect(valleyIndex([1])).toBeUndefined();
  });

  it('sweeps the rate exponentially, restores the weights, and suggests a rate on the descending part of the loss curve', async () => {
    const data = HeimdallDataModule.synthetic({ samples: 300, seed: 3, batchSize: 16 });
    const model = ConvNeXt.localization('atto', { seed: 3, inChans: data.inputShape[0] });
    const dir = tempDir();
    const trainer = new Trainer({ ...base, defaultRootDir: join(dir, 'outputs') });
    await model.saveWeights(join(dir, 'before.safetensors'));
    const r = await trainer.lrFind(model, data, { minLr: 1e-6, maxLr: 1, numTraining: 60 });
    await model.saveWeights(join(dir, 'after.safetensors'));
    expect(readFileSync(join(dir, 'after.safetensors')).equals(readFileSync(join(dir, 'before.safetensors')))).toBe(true);
    expect(r.lrs[0]).toBeCloseTo(1e-6, 12);
    for (let i = 1; i < r.lrs.length; i++) expect(r.lrs[i]! / r.lrs[i - 1]!).toBeCloseTo(1e6 ** (1 / 60), 9);
    const i = r.suggestionIndex!;
    expect(r.suggestion).toBe(r.lrs[i]);
    process.stderr.write(`lrFind: suggestion ${r.suggestion} after ${r.lrs.length} steps (diverged: ${r.diverged})\n`);
    // The valley: inside the longest stretch where the loss keeps falling — lower than where the sweep began, and
    // falling further after it — well before the loss diverges.
    expect(r.losses[i]!).toBeLessThan(r.losses[0]!);
    expect(Math.min(...r.losses.slice(i + 1))).toBeLessThan(r.losses[i]!);
    expect(r.suggestion!).toBeLessThan(r.lrs.at(-1)! / 10);
    // Lightning 2.x's rule on the same sweep, for the record (it takes noise at the smallest rates for the steepest fall)
    const lightning = r.lrs[suggestIndex(r.lrs, r.losses)!]!;
    process.stderr.write(`lrFind: valley ${r.suggestion}, Lightning 2.x's rule ${lightning}\n`);
    expect(existsSync(trainer.rootDir)).toBe(false); // no checkpoints, no run
  }, 600_000);
});

describe('valCheckInterval', () => {
  it('the engine: an epoch trained in pieces (pauseAfter, with accumulation) equals the epoch in one call', async () => {
    const { native } = await import('../../lib/native.js');
    const { blobDataset } = await import('../native/fixtures.js');
    const addon = native();
    const mk = () => new addon.Engine(new addon.Model({ variant: 'atto', head: 'regression', outputs: 2, seed: 4 }),
      { device: 'cpu', seed: 4, threads: 2, accumulate: 2, optimizer: { name: 'adamw', lr: 1e-3 }, schedule: { name: 'cosine', minLr: 1e-5 } });
    const data = blobDataset(80, 4); // 10 batches of 8: optimizer steps after batches 2, 4, … 10
    const whole = mk();
    const one = await whole.trainEpoch(data, { batchSize: 8, maxEpochs: 2 });
    const pieces = mk();
    const seen: number[] = [];
    const p1 = await pieces.trainEpoch(data, { batchSize: 8, maxEpochs: 2, pauseAfter: 3 }, (ev) => seen.push(ev.batch));
    // paused mid-accumulation (3 batches: one step, one batch of gradients pending)
    expect(p1).toMatchObject({ paused: true, batches: 3, samples: 24, step: 1, stopped: false });
    expect(pieces.batchInEpoch).toBe(3);
    expect(pieces.epoch).toBe(0);
    const v = await pieces.evaluate(data, { batchSize: 8 }); // validation between the pieces changes nothing
    expect(v.batches).toBe(10);
    const p2 = await pieces.trainEpoch(data, { batchSize: 8, maxEpochs: 2, pauseAfter: 7 }, (ev) => seen.push(ev.batch));
    expect(p2).toMatchObject({ paused: true, batches: 7, samples: 56, step: 3 });
    const p3 = await pieces.trainEpoch(data, { batchSize: 8, maxEpochs: 2, pauseAfter: 12 }, (ev) => seen.push(ev.batch));
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(p3).toMatchObject({ paused: false, batches: 10, samples: 80, step: one.step, epoch: 0 });
    expect(pieces.epoch).toBe(1);
    expect(pieces.batchInEpoch).toBe(0);
    expect(p3.metrics.loss).toBeCloseTo(one.metrics.loss!, 6);
    const probe = blobDataset(8, 99);
    const a = Object.values(await whole.predict(probe))[0]!.data;
    const b = Object.values(await pieces.predict(probe))[0]!.data;
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    expect(maxDiff).toBeLessThanOrEqual(1e-6);
    expect(() => pieces.trainEpoch(data, { batchSize: 8, maxEpochs: 2, pauseAfter: 0 })).toThrow(/pauseAfter must be ≥ 1/);
  });

  it('a fraction validates that often in each epoch: EarlyStopping, ModelCheckpoint and MLflow see every score; a mid-epoch checkpoint resumes there', async () => {
    const dir = tempDir();
    const data = () => blobData(120, 21, 8); // 86 training samples → 11 batches: validations after 2, 4, 6, 8 batches and at 11
    class Vals extends Callback {
      readonly seen: { epoch: number; batch: number; loss: number }[] = [];
      override onValidationEpochEnd(t: { currentEpoch: number; batchInEpoch: number }, m: Record<string, number>) { this.seen.push({ epoch: t.currentEpoch, batch: t.batchInEpoch, loss: m['val/loss']! }); }
    }
    const vals = new Vals();
    const ckpt = new ModelCheckpoint({ dirpath: join(dir, 'checkpoints'), filename: '{epoch}-{step}', saveTopK: -1 });
    const uri = `sqlite:///${join(dir, 'mlflow.db')}`;
    const logger = new MLflowLogger({ trackerOptions: { trackingUri: uri, artifactUri: join(dir, 'artifacts'), dotenvPath: false, env: {} }, logCheckpoints: false });
    const early = new EarlyStopping({ monitor: 'val/loss', patience: 100 });
    const trainer = new Trainer({ ...base, maxEpochs: 2, valCheckInterval: 0.2, defaultRootDir: dir, callbacks: [vals, ckpt, early], logger, logFigures: false, logSystemMetrics: false });
    const h = await trainer.fit(ConvNeXt.localization('atto', { seed: 21 }), data());
    expect(trainer.trainBatches).toBe(11);
    // Lightning: val_check_batch = int(11 × 0.2) = 2 → after batches 2, 4, 6, 8, 10 and at the epoch's end (where the
    // engine's epoch is complete: batchInEpoch 0)
    expect(vals.seen.map((v) => `${v.epoch}.${v.batch}`)).toEqual(['0.2', '0.4', '0.6', '0.8', '0.10', '0.0', '1.2', '1.4', '1.6', '1.8', '1.10', '1.0']);
    expect(h.epochs.length).toBe(2);
    expect(h.epochs[1]!.val!['val/loss']).toBe(vals.seen.at(-1)!.loss);
    // ModelCheckpoint scored every validation: 12 files, one per step validated
    const steps = [2, 4, 6, 8, 10, 11, 13, 15, 17, 19, 21, 22];
    expect(ckpt.bestK.length).toBe(12);
    expect(ckpt.bestK.map((k) => Number(/step=(\d+)/.exec(k.path)![1])).sort((p, q) => p - q)).toEqual(steps);
    // EarlyStopping's best is the best of all twelve
    expect((early.stateDict() as { best: number }).best).toBe(Math.min(...vals.seen.map((v) => v.loss)));
    const { MLflowTracker } = await import('../../lib/tracking/index.js');
    const check = new MLflowTracker({ trackingUri: uri, dotenvPath: false, env: {}, handleSignals: false, spoolDir: join(dir, 'spool') });
    const hist = await check.getMetricHistory('val/loss', logger.runId!);
    expect(hist.map((m) => m.step).sort((p, q) => p - q)).toEqual(steps);
    await check.close();

    // Resuming from the checkpoint of the validation after batch 6 of epoch 1 (step 17) goes on at batch 6 of that epoch
    const mid = ckpt.bestK.find((k) => k.path.includes('step=17'))!.path;
    const clock = new BatchClock();
    const vals2 = new Vals();
    const resumed = new Trainer({ ...base, maxEpochs: 2, valCheckInterval: 0.2, defaultRootDir: tempDir(), callbacks: [clock, vals2] });
    const h2 = await resumed.fit(ConvNeXt.localization('atto', { seed: 21 }), data(), { ckptPath: mid });
    expect(clock.batches.map((b) => `${b.epoch}.${b.batch}`)).toEqual(['1.6', '1.7', '1.8', '1.9', '1.10']);
    expect(vals2.seen.map((v) => `${v.epoch}.${v.batch}`)).toEqual(['1.8', '1.10', '1.0']);
    expect(h2.globalStep).toBe(22);
    expect(h2.epochs[0]!.val!['val/loss']).toBeCloseTo(vals.seen.at(-1)!.loss, 5); // the same last validation as without the stop
  });

  it('EarlyStopping at a validation inside an epoch ends fit there; bad values are refused', async () => {
    const vals: number[] = [];
    class Count extends Callback { override onValidationEpochEnd(t: { batchInEpoch: number }) { vals.push(t.batchInEpoch); } }
    const trainer = new Trainer({ ...base, maxEpochs: 5, valCheckInterval: 3, defaultRootDir: tempDir(), callbacks: [new Count(), new EarlyStopping({ monitor: 'val/loss', patience: 1, minDelta: 1e9 })] });
    const h = await trainer.fit(ConvNeXt.localization('atto', { seed: 22 }), blobData(120, 22, 8)); // 11 batches
    expect(vals).toEqual([3, 6]); // the first sets the best, the second fails to beat it by 1e9: stop
    expect(h.reason).toBe('stopped');
    expect(h.globalStep).toBe(6);
    expect(h.epochs.length).toBe(1);
    expect(() => new Trainer({ ...base, valCheckInterval: 1.5 })).toThrow(/valCheckInterval: a fraction of an epoch in \(0, 1\), or a whole number/);
    expect(() => new Trainer({ ...base, valCheckInterval: 0 })).toThrow(/valCheckInterval/);
    const tooMany = new Trainer({ ...base, maxEpochs: 1, valCheckInterval: 50, defaultRootDir: tempDir() });
    await expect(tooMany.fit(ConvNeXt.localization('atto', { seed: 22 }), blobData(120, 22, 8))).rejects.toThrow(/valCheckInterval: 50 batches is more than the 11 training batches of an epoch/);
  });
});

describe('deterministic and benchmark', () => {
  it('set libtorch\'s process-wide flags as Lightning does, and deterministic fits repeat exactly', async () => {
    const { torchInfo } = await import('../../lib/native.js');
    const fit = async (options: Record<string, unknown>) => {
      const model = ConvNeXt.localization('atto', { seed: 31 });
      const trainer = new Trainer({ ...base, maxEpochs: 1, defaultRootDir: tempDir(), ...options });
      const h = await trainer.fit(model, blobData(64, 31, 8));
      return { loss: h.epochs[0]!.train['train/loss']!, info: torchInfo(), trainer };
    };
    const a = await fit({ deterministic: true });
    expect(a.info).toMatchObject({ deterministicAlgorithms: 'on', deterministicCudnn: true, cudnnBenchmark: false });
    const b = await fit({ deterministic: true });
    expect(b.loss).toBe(a.loss);
    expect((await fit({ deterministic: 'warn', benchmark: true })).info).toMatchObject({ deterministicAlgorithms: 'warn', cudnnBenchmark: true });
    // unset: left as they are (Lightning's None)
    expect((await fit({})).info).toMatchObject({ deterministicAlgorithms: 'warn', cudnnBenchmark: true });
    expect((await fit({ deterministic: false, benchmark: false })).info).toMatchObject({ deterministicAlgorithms: 'off', deterministicCudnn: false, cudnnBenchmark: false });
    expect(() => new Trainer({ ...base, deterministic: 'yes' as never })).toThrow(/deterministic/);
  });
});

describe('EMAWeightAveraging', () => {
  // Python (safetensors + torch) computes the reference average from the trained weights saved after each step.
  const REF = `
import json, sys, torch
from safetensors.torch import load_file
steps, ema_path, decay = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])
ws = [load_file(p) for p in steps]
def weights(d): return {k: v for k, v in d.items() if not k.startswith(('optimizer.', 'rng.', 'amp.', 'current.'))}
ref = {k: v.double().clone() for k, v in weights(ws[0]).items()}
for w in ws[1:]:
    for k, v in weights(w).items():
        ref[k] = decay * ref[k] + (1 - decay) * v.double() if v.is_floating_point() else v.double()
got = load_file(ema_path)
avg = weights(got)
assert set(avg) == set(ref), (sorted(set(avg) ^ set(ref)))[:5]
cur = {k[len('current.'):]: v for k, v in got.items() if k.startswith('current.')}
last = weights(ws[-1])
print(json.dumps({
  'avg_vs_ref': max((avg[k].double() - ref[k]).abs().max().item() for k in ref),
  'avg_vs_last': max((avg[k].double() - last[k].double()).abs().max().item() for k in ref if last[k].is_floating_point()),
  'current_vs_last': max((cur[k].double() - last[k].double()).abs().max().item() for k in last),
  'tensors': len(ref)}))
`;

  it('the engine\'s average equals a reference computed from the weights after each step (1e-6); eval sees it; checkpoints resume it', async () => {
    const { native } = await import('../../lib/native.js');
    const { blobDataset } = await import('../native/fixtures.js');
    const addon = native();
    const dir = tempDir();
    const mk = (ema: Record<string, number> = {}) => new addon.Engine(new addon.Model({ variant: 'atto', head: 'localization', seed: 5 }),
      { device: 'cpu', seed: 5, threads: 2, optimizer: { name: 'adamw', lr: 3e-3 }, schedule: { name: 'cosine', minLr: 1e-5 }, ...ema });
    const data = blobDataset(64, 5); // 8 batches of 8 = 8 steps per epoch
    // plain training, paused after steps 2 … 5 (the schedule is the epoch's either way), weights saved at each
    const plain = mk();
    const steps: string[] = [];
    for (const k of [2, 3, 4, 5]) {
      await plain.trainEpoch(data, { batchSize: 8, maxEpochs: 1, pauseAfter: k });
      steps.push(join(dir, `step${k}.safetensors`));
      await plain.saveCheckpoint(steps.at(-1)!);
    }
    // EMA from step 2 (the first update copies), every step
    const ema = mk({ emaDecay: 0.6, emaEvery: 1, emaStart: 2 });
    await ema.trainEpoch(data, { batchSize: 8, maxEpochs: 1, pauseAfter: 5 });
    expect(ema.emaUpdates).toBe(4);
    await ema.saveCheckpoint(join(dir, 'ema.safetensors'));
    const r = JSON.parse(await python(REF, [JSON.stringify(steps), join(dir, 'ema.safetensors'), '0.6']));
    expect(r.tensors).toBeGreaterThan(100);
    expect(r.avg_vs_ref).toBeLessThanOrEqual(1e-6);
    expect(r.avg_vs_last).toBeGreaterThan(1e-4); // the average is not the weights
    expect(r.current_vs_last).toBe(0); // the trained weights ride along, exactly

    // predict and evaluate see the average; the trained weights come back after
    const probe = blobDataset(8, 77);
    const out = async (e: typeof ema) => Object.values(await e.predict(probe)).map((o) => Array.from(o.data));
    const seenAvg = await out(ema);
    const seenPlain = await out(plain);
    expect(seenAvg).not.toEqual(seenPlain);
    // resuming: a new engine with EMA takes the trained weights from current.* and the average from the weights.
    // (Engines share libtorch's global generator, which the checkpoint holds: the straight run goes on first.)
    await ema.trainEpoch(data, { batchSize: 8, maxEpochs: 1, pauseAfter: 6 });
    const straight = await out(ema);
    const resumed = mk({ emaDecay: 0.6, emaEvery: 1, emaStart: 2 });
    await resumed.loadCheckpoint(join(dir, 'ema.safetensors'));
    expect(resumed.emaUpdates).toBe(4);
    expect(await out(resumed)).toEqual(seenAvg);
    await resumed.trainEpoch(data, { batchSize: 8, maxEpochs: 1, pauseAfter: 6 });
    expect(resumed.emaUpdates).toBe(5);
    expect(await out(resumed)).toEqual(straight);
    // without EMA, the same file resumes the trained weights (equal to plain's after step 5)
    const noEma = mk();
    await noEma.loadCheckpoint(join(dir, 'ema.safetensors'));
    expect(noEma.emaUpdates).toBe(0);
    expect(await out(noEma)).toEqual(seenPlain);
    // applyAverage: the weights become the average, which restarts
    const before = await out(ema);
    await ema.applyAverage();
    expect(ema.emaUpdates).toBe(0);
    expect(await out(ema)).toEqual(before);
    expect(() => mk({ emaDecay: 1 })).toThrow(/emaDecay/);
  });

  it('Trainer: validation sees the average; checkpoints, loadWeights and the model after fit hold it', async () => {
    const dir = tempDir();
    const ema = new EMAWeightAveraging({ decay: 0.9 });
    const ckpt = new ModelCheckpoint({ dirpath: join(dir, 'checkpoints') });
    const model = ConvNeXt.localization('atto', { seed: 41 });
    const trainer = new Trainer({ ...base, maxEpochs: 2, defaultRootDir: dir, callbacks: [ema, ckpt] });
    const h = await trainer.fit(model, blobData(120, 41, 8));
    // after fit the model's weights are the average: last.safetensors (the average as its weights) equals the model
    await model.saveWeights(join(dir, 'model.safetensors'));
    const cmp = JSON.parse(await python(`
import json, sys
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
w = {k: v for k, v in a.items() if not k.startswith(('optimizer.', 'rng.', 'amp.', 'current.'))}
cur = {k[8:]: v for k, v in a.items() if k.startswith('current.')}
print(json.dumps({'avg_vs_model': max((w[k].double() - b[k].double()).abs().max().item() for k in b if b[k].is_floating_point()),
                  'current_vs_model': max((cur[k].double() - b[k].double()).abs().max().item() for k in b if b[k].is_floating_point()),
                  'has_current': len(cur)}))`, [ckpt.lastModelPath!, join(dir, 'model.safetensors')]));
    expect(cmp.has_current).toBeGreaterThan(100);
    expect(cmp.avg_vs_model).toBe(0);
    expect(cmp.current_vs_model).toBeGreaterThan(1e-5);
    // what loadWeights (and the ONNX export, same reader) takes from the checkpoint is the average
    const loaded = ConvNeXt.localization('atto', { seed: 99 });
    await loaded.loadWeights(ckpt.lastModelPath!);
    await loaded.saveWeights(join(dir, 'loaded.safetensors'));
    const same = await python(`
import sys
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
print(max((a[k].double() - b[k].double()).abs().max().item() for k in b))`, [join(dir, 'loaded.safetensors'), join(dir, 'model.safetensors')]);
    expect(Number(same)).toBe(0);
    // the last validation ran on the average: test() now (the model is the average) gives the same val loss
    const again = await trainer.validate();
    expect(again['val/loss']).toBeCloseTo(h.epochs.at(-1)!.val!['val/loss']!, 5);
    expect(() => new EMAWeightAveraging({ decay: 1 })).toThrow(/decay/);
  });
});

describe('GradientAccumulationScheduler', () => {
  it('changes the batches per optimizer step by epoch, and the schedule spans the steps it makes', async () => {
    const clock = new BatchClock();
    const lrs: number[] = [];
    class Lr extends Callback { override onTrainBatchEnd(_t: unknown, b: TrainBatch) { lrs.push(b.lr); } }
    const scheduler = new GradientAccumulationScheduler({ scheduling: { 1: 2, 2: 4 } }); // epoch 0: 1 (implied), 1: 2, 2+: 4
    const trainer = new Trainer({ ...base, maxEpochs: 3, defaultRootDir: tempDir(), schedule: { name: 'cosine', warmupSteps: 0, minLr: 1e-5 }, callbacks: [clock, new Lr(), scheduler] });
    const h = await trainer.fit(ConvNeXt.localization('atto', { seed: 51 }), blobData(120, 51, 8)); // 11 batches per epoch
    const stepsAt = (epoch: number) => clock.batches.filter((b) => b.epoch === epoch).map((b) => b.step);
    expect(stepsAt(0)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(stepsAt(1)).toEqual([11, 12, 12, 13, 13, 14, 14, 15, 15, 16, 17]); // pairs; the epoch's last batch steps alone
    expect(stepsAt(2)).toEqual([17, 17, 17, 18, 18, 18, 18, 19, 19, 19, 20]);
    expect(h.globalStep).toBe(20);
    expect(scheduler.steps(11, 3)).toBe(20);
    // cosine over exactly those 20 steps: the last step's rate is the schedule's last value before minLr
    const cosine = (t: number) => 1e-5 + (2e-3 - 1e-5) * 0.5 * (1 + Math.cos(Math.PI * t / 20));
    expect(lrs.at(-1)).toBeCloseTo(cosine(19), 9);
    const both = new Trainer({ ...base, accumulateGradBatches: 2, defaultRootDir: tempDir(), callbacks: [new GradientAccumulationScheduler({ scheduling: { 0: 2 } })] });
    await expect(both.fit(ConvNeXt.localization('atto'), blobData())).rejects.toThrow(/accumulateGradBatches: 2 and a GradientAccumulationScheduler/);
    expect(() => new GradientAccumulationScheduler({ scheduling: { 0: 0 } })).toThrow(/GradientAccumulationScheduler options/);
    expect(() => new GradientAccumulationScheduler({ scheduling: {} })).toThrow(/scheduling is empty/);
  });
});

describe('ThroughputMonitor', () => {
  it('FLOPs per sample equal PyTorch FlopCounterMode on the reference network (forward; forward + backward with depthwise convolutions counted right)', async () => {
    const cases = [
      { variant: 'convnext_atto', head: 'localization', outputs: 2, inChans: 3, h: 64, w: 96 },
      { variant: 'convnext_atto', head: 'classification', outputs: 5, inChans: 7, h: 128, w: 32 },
      { variant: 'convnextv2_nano', head: 'regression', outputs: 3, inChans: 3, h: 97, w: 70 },
    ] as const;
    const ref = JSON.parse(await python(`
import json, sys, torch
sys.path.insert(0, 'test/onnx')
from reference import Reference
from torch.utils.flop_counter import FlopCounterMode
out = []
for c in json.loads(sys.argv[1]):
    m = Reference(c['variant'], c['head'], c['outputs'], c['inChans']).train()
    x = torch.randn(2, c['inChans'], c['h'], c['w'])
    with FlopCounterMode(display=False) as f:
        m(x)
    with FlopCounterMode(display=False) as g:
        sum(o.sum() for o in m(x).values()).backward()
    # FlopCounterMode counts a grouped convolution's weight gradient as if it were dense (groups ignored: C times
    # too many for a depthwise conv); those modules' backward is counted here as 2 × forward, as for every other.
    counts, fix = g.get_flop_counts(), 0
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.Conv2d) and mod.groups > 1:
            c = counts['Reference.' + name]
            fix += c[torch.ops.aten.convolution_backward] - 2 * c[torch.ops.aten.convolution]
    out.append({'forward': f.get_total_flops() / 2, 'training': (g.get_total_flops() - fix) / 2, 'raw': g.get_total_flops() / 2})
print(json.dumps(out))`, [JSON.stringify(cases)]));
    cases.forEach((c, i) => {
      const model = c.head === 'localization'
        ? ConvNeXt.localization(c.variant.replace('convnext_', '') as 'atto', { inChans: c.inChans })
        : new ConvNeXt({ variant: c.variant, head: c.head, outputs: c.outputs, inChans: c.inChans });
      const mine = flopsPerSample(model, [c.inChans, c.h, c.w]);
      expect(mine, `${c.variant} ${c.head}`).toEqual({ forward: ref[i].forward, training: ref[i].training });
      expect(ref[i].raw / mine.training).toBeGreaterThan(2); // what measure_flops reports for ConvNeXt, uncorrected
    });
  });

  it('logs samples, batches and FLOPs per second over its window, from the batches\' own clock', async () => {
    const clock: { time: number; samples: number; step: number }[] = [];
    class Times extends Callback { override onTrainBatchEnd(_t: unknown, b: TrainBatch) { clock.push({ time: b.time, samples: b.batchSize, step: b.step }); } }
    const monitor = new ThroughputMonitor({ windowSize: 4, logEveryNSteps: 5 });
    const logged: { step: number; m: Record<string, number> }[] = [];
    const trainer = new Trainer({ ...base, maxEpochs: 1, defaultRootDir: tempDir(), callbacks: [new Times(), monitor] });
    const orig = trainer.logMetrics.bind(trainer);
    trainer.logMetrics = (m: Record<string, number>, step?: number) => { if ('throughput/samples_per_sec' in m) logged.push({ step: step!, m }); return orig(m, step); };
    const model = ConvNeXt.localization('atto', { seed: 61 });
    await trainer.fit(model, blobData(120, 61, 8)); // 11 batches: logs at steps 5 and 10
    expect(logged.map((l) => l.step)).toEqual([5, 10]);
    const at10 = clock.findIndex((c) => c.step === 10);
    const win = clock.slice(at10 - 3, at10 + 1); // the last 4 batches
    const seconds = win.at(-1)!.time - win[0]!.time;
    const samples = win.slice(1).reduce((a, b) => a + b.samples, 0);
    const m = logged[1]!.m;
    expect(m['throughput/device/samples_per_sec']).toBeCloseTo(samples / seconds, 6);
    expect(m['throughput/device/batches_per_sec']).toBeCloseTo(3 / seconds, 6);
    expect(m['throughput/samples_per_sec']).toBe(m['throughput/device/samples_per_sec']); // one rank
    expect(m['throughput/device/flops_per_sec']).toBeCloseTo((samples / seconds) * flopsPerSample(model, [3, 32, 32]).training, 0);
    expect(m['throughput/device/mfu']).toBeUndefined(); // CPU: no peak to compare with
    expect(peakFlops('NVIDIA H200', 'bf16-mixed')).toBe(989.4e12);
    expect(peakFlops('NVIDIA H100 PCIe', '32')).toBe(51.2e12);
    expect(peakFlops('Some GPU', '32')).toBeNull();
  });
});

describe('BackboneFinetuning', () => {
  it('keeps the backbone frozen, then trains it at a fraction of the rate that grows each epoch up to the heads\'', async () => {
    const ft = new BackboneFinetuning({ unfreezeBackboneAtEpoch: 1, backboneInitialRatioLr: 0.1 });
    const scales = [0, 1, 2, 3, 4, 5, 6, 7].map((e) => ft.scaleAt(e));
    expect(scales[0]).toBeNull();
    [0.1, 0.15, 0.225, 0.3375, 0.50625, 0.759375, 1].forEach((v, i) => expect(scales[i + 1]).toBeCloseTo(v, 12));
    expect(new BackboneFinetuning({ unfreezeBackboneAtEpoch: 0, lambdaFunc: () => 2, shouldAlign: false }).scaleAt(5)).toBeCloseTo(3.2, 12);

    const dir = tempDir();
    const model = ConvNeXt.localization('atto', { seed: 71 });
    await model.ready();
    await model.saveWeights(join(dir, 'init.safetensors'));
    class Snap extends Callback {
      override async onTrainEpochEnd(t: { currentEpoch: number }) { await model.saveWeights(join(dir, `epoch${t.currentEpoch - 1}.safetensors`)); }
    }
    // one AdamW step per epoch at a constant rate, no weight decay: AdamW's first step moves every weight whose
    // gradient is well above eps by exactly its rate
    const trainer = new Trainer({ ...base, maxEpochs: 2, limitTrainBatches: 1, limitValBatches: 0, optimizer: { name: 'adamw', lr: 1e-3, weightDecay: 0 },
      schedule: { name: 'constant', warmupSteps: 0 }, defaultRootDir: dir, callbacks: [ft, new Snap()] });
    await trainer.fit(model, blobData(120, 71, 8));
    const moved = JSON.parse(await python(`
import json, sys
from safetensors.torch import load_file
a, b, c = (load_file(p) for p in sys.argv[1:4])
head = lambda k: k.startswith(('position_head.', 'uncertainty_head.'))
def change(x, y, heads):
    return max((y[k].double() - x[k].double()).abs().max().item() for k in x if head(k) == heads and 'running_' not in k and 'num_batches' not in k)
print(json.dumps({'e0_backbone': change(a, b, False), 'e0_heads': change(a, b, True), 'e1_backbone': change(b, c, False)}))`,
    [join(dir, 'init.safetensors'), join(dir, 'epoch0.safetensors'), join(dir, 'epoch1.safetensors')]));
    expect(moved.e0_backbone).toBe(0); // frozen in epoch 0
    expect(moved.e0_heads).toBeCloseTo(1e-3, 6); // the heads' first step: the full rate
    expect(moved.e1_backbone).toBeCloseTo(1e-4, 6); // unfrozen in epoch 1: its first step at 0.1 × the rate (± float32 rounding)
  });
});

describe('overfitBatches', () => {
  it('trains on the same first n batches every epoch, in the data\'s order', async () => {
    // 64 samples; the first 16 (the first two batches of 8) have target (1, 1), the other 48 (−1, −1)
    const n = 64;
    const { inputs } = blobs(n, 81);
    const targets = new Float32Array(2 * n).map((_, i) => (i < 32 ? 1 : -1));
    const data = () => new TensorDataModule(inputs, [n, 3, 32, 32], targets, [n, 2], { batchSize: 8, split: false });
    const fit = async (options: Record<string, unknown>) => {
      const model = new ConvNeXt({ variant: 'atto', head: 'regression', outputs: 2, seed: 81 });
      const trainer = new Trainer({ ...base, maxEpochs: 12, defaultRootDir: tempDir(), ...options });
      const clock = new BatchClock();
      (trainer.callbacks as Callback[]).push(clock);
      await trainer.fit(model, data());
      const out = await trainer.predict(inputs.subarray(32 * 3 * 32 * 32), [n - 32, 3, 32, 32]);
      const mean = Array.from(Object.values(out)[0]!.data).reduce((a, b) => a + b, 0) / (2 * (n - 32));
      return { mean, batches: clock.batches };
    };
    const overfit = await fit({ overfitBatches: 2 });
    expect(overfit.batches.length).toBe(24); // 2 batches × 12 epochs
    // it only ever saw the (1, 1) samples: it predicts about (1, 1) for the others too
    expect(overfit.mean).toBeGreaterThan(0.5);
    // the same limit with shuffling sees mostly (−1, −1) samples
    const limited = await fit({ limitTrainBatches: 2 });
    expect(limited.mean).toBeLessThan(0);
    expect(new Trainer({ ...base, overfitBatches: 0.25 }).config.overfitBatches).toBe(0.25);
    expect(() => new Trainer({ ...base, overfitBatches: 1.5 })).toThrow(/overfitBatches/);
  });
});

describe('BasePredictionWriter', () => {
  it('gets each batch of predict() as it is made, and at the end all of them; returnPredictions: false keeps nothing', async () => {
    const dir = tempDir();
    class Recorder extends BasePredictionWriter {
      readonly batches: { idx: number[]; b: number; n: number }[] = [];
      ends = 0;
      constructor() { super('batch_and_epoch'); }
      override writeOnBatchEnd(_t: unknown, p: Record<string, { data: Float32Array; shape: number[] }>, idx: number[], b: number) { this.batches.push({ idx, b, n: p.positions!.shape[0]! }); }
      override writeOnEpochEnd(_t: unknown, all: unknown[], idx: number[][]) { this.ends++; expect(all.length).toBe(idx.length); }
    }
    const rec = new Recorder();
    const csv = new CsvPredictionWriter(join(dir, 'preds', 'out.csv'));
    const trainer = new Trainer({ ...base, maxEpochs: 1, defaultRootDir: dir, callbacks: [rec, csv] });
    const data = blobData(120, 91, 8); // test split: 12 samples → batches of 8 and 4
    await trainer.fit(ConvNeXt.localization('atto', { seed: 91 }), data);
    const all = await trainer.predict(data);
    const size = all.positions!.shape[0]!;
    expect(rec.batches.map((x) => x.b)).toEqual(Array.from({ length: Math.ceil(size / 8) }, (_, i) => i));
    expect(rec.batches.flatMap((x) => x.idx)).toEqual(Array.from({ length: size }, (_, i) => i));
    expect(rec.batches.map((x) => x.n)).toEqual(rec.batches.map((x) => x.idx.length));
    expect(rec.ends).toBe(1);
    // the batches put together equal one pass over the whole split
    const whole = await (trainer as unknown as { engine: { predict(d: unknown, o: unknown): Promise<Record<string, { data: Float32Array }>> } }).engine
      .predict((await data.setup()).test!, { batchSize: 8 });
    expect(Array.from(all.positions!.data)).toEqual(Array.from(whole.positions!.data));
    // the CSV: a header, one row per sample, the same values
    const lines = readFileSync(join(dir, 'preds', 'out.csv'), 'utf8').trim().split('\n');
    expect(lines[0]).toBe('index,positions_0,positions_1,uncertainties_0,uncertainties_1');
    expect(lines.length).toBe(size + 1);
    const row3 = lines[4]!.split(',').map(Number);
    expect(row3[0]).toBe(3);
    expect(row3[1]).toBeCloseTo(all.positions!.data[6]!, 5);
    expect(row3[4]).toBeCloseTo(all.uncertainties!.data[7]!, 5);
    // streaming only: the writers still see everything
    const before = rec.batches.length;
    expect(await trainer.predict(data, { returnPredictions: false })).toEqual({});
    expect(rec.batches.length - before).toBe(Math.ceil(size / 8));
    expect(readFileSync(join(dir, 'preds', 'out.csv'), 'utf8').trim().split('\n').length).toBe(size + 1);
  });
});

describe('StochasticWeightAveraging', () => {
  it('anneals the rate to swaLrs from swaEpochStart, averages the epochs\' weights equally, ends with the average; a resumed fit ends the same', async () => {
    const dir = tempDir();
    const model = ConvNeXt.localization('atto', { seed: 101 });
    const lrs = new Map<number, number[]>();
    class Rec extends Callback {
      override onTrainBatchEnd(_t: unknown, b: TrainBatch) { lrs.set(b.epoch, [...(lrs.get(b.epoch) ?? []), b.lr]); }
      override async onTrainEpochEnd(t: { currentEpoch: number }) { await model.saveWeights(join(dir, `epoch${t.currentEpoch - 1}.safetensors`)); }
    }
    const swa = new StochasticWeightAveraging({ swaLrs: 1e-4, swaEpochStart: 1, annealingEpochs: 2 });
    const trainer = new Trainer({ ...base, maxEpochs: 4, limitTrainBatches: 3, optimizer: { name: 'adamw', lr: 2e-3, weightDecay: 0 },
      schedule: { name: 'constant', warmupSteps: 0 }, defaultRootDir: dir, callbacks: [new Rec(), swa] });
    await trainer.fit(model, blobData(120, 101, 8));
    // SWALR (cos): the first SWA epoch at the rate it starts from, then halfway, then swaLrs
    expect([0, 1, 2, 3].map((e) => lrs.get(e)![0])).toEqual([2e-3, 2e-3, expect.closeTo(1.05e-3, 12), expect.closeTo(1e-4, 12)]);
    expect(swa.startLr).toBe(2e-3);
    await model.saveWeights(join(dir, 'final.safetensors'));
    const r = JSON.parse(await python(`
import json, sys
from safetensors.torch import load_file
snaps = [load_file(p) for p in sys.argv[1:4]]
final = load_file(sys.argv[4])
keys = [k for k in final if final[k].is_floating_point() and 'running_' not in k]
avg = {k: sum(s[k].double() for s in snaps) / 3 for k in keys}
print(json.dumps({'avg': max((final[k].double() - avg[k]).abs().max().item() for k in keys),
                  'last': max((final[k].double() - snaps[-1][k].double()).abs().max().item() for k in keys)}))`,
    [1, 2, 3].map((e) => join(dir, `epoch${e}.safetensors`)).concat(join(dir, 'final.safetensors'))));
    expect(r.avg).toBeLessThanOrEqual(1e-6); // the mean of epochs 1, 2 and 3
    expect(r.last).toBeGreaterThan(1e-4);    // not the last weights
    // Resuming from the checkpoint of epoch 2 (average of 2 epochs, the rate override, startLr) ends the same way
    const straightRun = async (maxEpochs: number, ckptPath?: string) => {
      const m = ConvNeXt.localization('atto', { seed: 101 });
      const ck = new ModelCheckpoint({ dirpath: join(dir, 'resume-ckpt'), saveTopK: 0 });
      const t = new Trainer({ ...base, maxEpochs, limitTrainBatches: 3, optimizer: { name: 'adamw', lr: 2e-3, weightDecay: 0 },
        schedule: { name: 'constant', warmupSteps: 0 }, defaultRootDir: join(dir, 'resume'), callbacks: [ck, new StochasticWeightAveraging({ swaLrs: 1e-4, swaEpochStart: 1, annealingEpochs: 2 })] });
      await t.fit(m, blobData(120, 101, 8), ckptPath ? { ckptPath } : {});
      return { m, last: ck.lastModelPath! };
    };
    const first = await straightRun(3);
    const copy = join(dir, 'epoch2-last.safetensors');
    writeFileSync(copy, readFileSync(first.last));
    const resumed = await straightRun(4, copy);
    await resumed.m.saveWeights(join(dir, 'resumed.safetensors'));
    const same = JSON.parse(await python(`
import json, sys
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
print(json.dumps(max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())))`, [join(dir, 'final.safetensors'), join(dir, 'resumed.safetensors')]));
    expect(same).toBeLessThanOrEqual(1e-6);
    const both = new Trainer({ ...base, maxEpochs: 1, defaultRootDir: tempDir(), callbacks: [swa, new EMAWeightAveraging()] });
    await expect(both.fit(ConvNeXt.localization('atto'), blobData())).rejects.toThrow(/EMA and SWA both average/);
    expect(() => new StochasticWeightAveraging({ swaLrs: 1e-3, swaEpochStart: 2.5 })).toThrow(/swaEpochStart/);
  });
});
