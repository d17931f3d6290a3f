import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { ConfigError } from '../../lib/config.js';
import { HeimdallError } from '../../lib/errors.js';
import { ConvNeXt } from '../../lib/model.js';
import { native } from '../../lib/native.js';
import { MLflowTracker } from '../../lib/tracking/index.js';
import { Callback, EarlyStopping, LearningRateMonitor, MLflowLogger, ModelCheckpoint, TensorDataModule, Trainer, formatFilename, type Metrics, type TrainBatch } from '../../lib/trainer/index.js';
import { python } from '../helpers/python.js';
import { blobs } from '../native/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

function blobData(n = 120, seed = 1, batchSize = 16): TensorDataModule {
  const { inputs, targets } = blobs(n, seed);
  return new TensorDataModule(inputs, [n, 3, 32, 32], targets, [n, 2], { batchSize, seed: 3 });
}

const base = { device: 'cpu', threads: 2, enableProgressBar: false, enableModelSummary: false, handleSignals: false, optimizer: { name: 'adamw' as const, lr: 2e-3, weightDecay: 1e-5 } };

class Recorder extends Callback {
  readonly calls: string[] = [];
  private state = { fits: 0 };
  override onFitStart() { this.calls.push('onFitStart'); this.state.fits++; }
  override onTrainStart() { this.calls.push('onTrainStart'); }
  override onTrainEpochStart(_t: Trainer, e: number) { this.calls.push(`onTrainEpochStart:${e}`); }
  override async onTrainBatchStart(_t: Trainer, e: number, b: number) { await new Promise((r) => setTimeout(r, 1)); this.calls.push(`onTrainBatchStart:${e}.${b}`); }
  override onTrainBatchEnd(_t: Trainer, b: TrainBatch) { this.calls.push(`onTrainBatchEnd:${b.epoch}.${b.batch}`); }
  override onValidationStart() { this.calls.push('onValidationStart'); }
  override onValidationEpochEnd(_t: Trainer, m: Metrics) { this.calls.push(`onValidationEpochEnd:${'val/loss' in m}`); }
  override onTrainEpochEnd(_t: Trainer, m: Metrics) { this.calls.push(`onTrainEpochEnd:${'train/loss' in m && 'val/loss' in m}`); }
  override onTrainEnd() { this.calls.push('onTrainEnd'); }
  override onFitEnd() { this.calls.push('onFitEnd'); }
  override stateDict() { return { ...this.state }; }
  override loadStateDict(s: Record<string, unknown>) { this.state = { fits: Number(s.fits) }; }
  get fits() { return this.state.fits; }
}

describe('Trainer', () => {
  it('calls hooks in Lightning\'s order, every batch in order, awaiting async hooks', async () => {
    const rec = new Recorder();
    const dir = tempDir();
    const data = blobData(60, 1, 16); // split 60 → 43 train (3 batches), 11 val, 6 test
    const trainer = new Trainer({ ...base, maxEpochs: 2, defaultRootDir: dir, callbacks: [rec] });
    const history = await trainer.fit(ConvNeXt.localization('atto', { seed: 1 }), data);
    const batches = (e: number) => [0, 1, 2].flatMap((b) => [`onTrainBatchStart:${e}.${b}`, `onTrainBatchEnd:${e}.${b}`]);
    expect(rec.calls).toEqual([
      'onFitStart', 'onTrainStart',
      'onTrainEpochStart:0', ...batches(0), 'onValidationStart', 'onValidationEpochEnd:true', 'onTrainEpochEnd:true',
      'onTrainEpochStart:1', ...batches(1), 'onValidationStart', 'onValidationEpochEnd:true', 'onTrainEpochEnd:true',
      'onTrainEnd', 'onFitEnd',
    ]);
    expect(history.reason).toBe('max_epochs');
    expect(history.epochs.map((e) => e.epoch)).toEqual([0, 1]);
    expect(history.globalStep).toBe(6);
    expect(history.epochs[1]!.val!['val/loss']).toBeTypeOf('number');
  });

  it('ModelCheckpoint keeps the top-k by val/loss on disk, plus last, with path-safe names', async () => {
    const dir = tempDir();
    const ckpt = new ModelCheckpoint({ saveTopK: 2 });
    const trainer = new Trainer({ ...base, maxEpochs: 4, defaultRootDir: dir, callbacks: [ckpt] });
    const history = await trainer.fit(ConvNeXt.localization('atto', { seed: 2 }), blobData(80, 2));
    const files = readdirSync(join(dir, 'checkpoints')).sort();
    expect(files).toContain('last.safetensors');
    expect(files.length).toBe(3);
    const losses = history.epochs.map((e) => ({ epoch: e.epoch, loss: e.val!['val/loss']! })).sort((a, b) => a.loss - b.loss);
    const expected = losses.slice(0, 2).map((l) => `epoch=${l.epoch}-val_loss=${l.loss.toFixed(4)}.safetensors`).sort();
    expect(files.filter((f) => f !== 'last.safetensors').sort()).toEqual(expected);
    expect(ckpt.bestModelScore).toBeCloseTo(losses[0]!.loss, 10);
    expect(ckpt.bestModelPath).toBe(join(dir, 'checkpoints', expected.find((f) => f.startsWith(`epoch=${losses[0]!.epoch}-`))!));
  });

  it('formats checkpoint names from templates', () => {
    expect(formatFilename('{epoch}-{val/loss:.3f}-{val/position_error_m:.0f}', 7, { 'val/loss': 0.12345, 'val/position_error_m': 1234.6 })).toBe(
      'epoch=7-val_loss=0.123-val_position_error_m=1235',
    );
  });

  it('EarlyStopping ends fit when val/loss stops improving by minDelta', async () => {
    const stopper = new EarlyStopping({ patience: 1, minDelta: 1e9 });
    const trainer = new Trainer({ ...base, maxEpochs: 10, defaultRootDir: tempDir(), callbacks: [stopper] });
    const history = await trainer.fit(ConvNeXt.localization('atto'), blobData(60));
    expect(history.reason).toBe('stopped');
    expect(history.epochs.length).toBe(2);
    expect(stopper.stoppedEpoch).toBe(1); // the 0-based epoch in which it stopped, as Lightning counts
    expect(stopper.reason).toMatch(/did not improve for 1 validations/);
  });

  it('EarlyStopping names a monitored metric that does not exist', async () => {
    const trainer = new Trainer({ ...base, maxEpochs: 2, defaultRootDir: tempDir(), callbacks: [new EarlyStopping({ monitor: 'val/acc' })] });
    await expect(trainer.fit(ConvNeXt.localization('atto'), blobData(40))).rejects.toThrow(/"val\/acc" is not among the validation metrics/);
  });

  it('LearningRateMonitor records the cosine-decayed rate per epoch', async () => {
    const lr = new LearningRateMonitor();
    const trainer = new Trainer({ ...base, maxEpochs: 3, defaultRootDir: tempDir(), callbacks: [lr], schedule: { name: 'cosine', minLr: 1e-5 } });
    await trainer.fit(ConvNeXt.localization('atto'), blobData(60));
    expect(lr.history.map(([s]) => s)).toEqual([0, 3, 6]);
    expect(lr.history[0]![1]).toBeCloseTo(2e-3, 12);
    expect(lr.history[1]![1]).toBeLessThan(2e-3);
    expect(lr.history[2]![1]).toBeLessThan(lr.history[1]![1]);
  });

  it('resumes model, optimizer, schedule and callbacks: fit(2) equals fit(1) + stop + fit(ckptPath)', async () => {
    const mk = () => ConvNeXt.localization('atto', { seed: 4, dropPathRate: 0.05 });
    const straight = new Trainer({ ...base, maxEpochs: 2, defaultRootDir: tempDir() });
    await straight.fit(mk(), blobData(60, 7));

    class StopAfterFirstEpoch extends Callback {
      override onTrainEpochEnd(t: Trainer) { t.stop('test'); }
    }
    const rootA = tempDir();
    const recA = new Recorder();
    const first = new Trainer({ ...base, maxEpochs: 2, defaultRootDir: rootA, callbacks: [recA, new StopAfterFirstEpoch()] });
    const h1 = await first.fit(mk(), blobData(60, 7));
    expect(h1.reason).toBe('interrupted');
    expect(h1.epochs.length).toBe(1);
    expect(existsSync(h1.interruptCheckpoint!)).toBe(true);

    const recB = new Recorder();
    const resumed = new Trainer({ ...base, maxEpochs: 2, defaultRootDir: tempDir(), callbacks: [recB] });
    const h2 = await resumed.fit(ConvNeXt.localization('atto', { seed: 99, dropPathRate: 0.05 }), blobData(60, 7), { ckptPath: h1.interruptCheckpoint });
    expect(recB.fits).toBe(2); // state restored from the checkpoint, then this fit
    expect(h2.epochs.map((e) => e.epoch)).toEqual([1]);
    const probe = new Float32Array(4 * 3 * 32 * 32).map((_, i) => Math.sin(i / 7));
    const a = await straight.predict(probe, [4, 3, 32, 32]);
    const b = await resumed.predict(probe, [4, 3, 32, 32]);
    const pa = a.positions!.data, pb = b.positions!.data;
    for (let i = 0; i < pa.length; i++) expect(Math.abs(pa[i]! - pb[i]!)).toBeLessThanOrEqual(1e-6);
  });

  it('validates its options and lists every problem at once', () => {
    expect(() => new Trainer({ maxEpochs: 0, device: 'tpu', optimizer: { name: 'adamw', lr: -1 } } as never)).toThrow(
      /maxEpochs[\s\S]*device: must be auto, cpu, cuda or cuda:N[\s\S]*optimizer.lr/,
    );
  });

  it('a throwing batch hook stops the epoch and fit rejects with that error', async () => {
    class Boom extends Callback {
      override onTrainBatchEnd(_t: Trainer, b: TrainBatch) { if (b.batch === 1) throw new Error('hook failed'); }
    }
    const seen: Error[] = [];
    class Watch extends Callback { override onException(_t: Trainer, e: Error) { seen.push(e); } }
    const trainer = new Trainer({ ...base, maxEpochs: 2, defaultRootDir: tempDir(), callbacks: [new Boom(), new Watch()] });
    await expect(trainer.fit(ConvNeXt.localization('atto'), blobData(60))).rejects.toThrow('hook failed');
    expect(seen.map((e) => e.message)).toEqual(['hook failed']);
  });

  it('exportOnnx() exports the best checkpoint, validated in ONNX Runtime, and logs it as the run\'s MLflow logged model', async () => {
    const dir = tempDir();
    const trackingUri = `sqlite:///${join(dir, 'mlflow.db')}`;
    const ckpt = new ModelCheckpoint({ saveTopK: -1 });  // keeps every epoch's checkpoint
    const logger = new MLflowLogger({ runName: 'export-from-trainer', trackerOptions: { trackingUri, artifactUri: join(dir, 'artifacts') } });
    const trainer = new Trainer({ ...base, maxEpochs: 3, defaultRootDir: dir, callbacks: [ckpt, new LearningRateMonitor()], logger });
    await expect(trainer.exportOnnx(join(dir, 'early.onnx'))).rejects.toThrow(/call fit\(\) first/);
    await trainer.fit(ConvNeXt.localization('atto', { seed: 5 }), blobData(60, 5));
    const report = await trainer.exportOnnx(join(dir, 'model.onnx'));
    expect(report.source).toBe(ckpt.bestModelPath);
    expect(report.validation?.passed).toBe(true);
    expect(report.inputShape).toEqual([-1, 3, 32, 32]);  // the data module's sample shape, dynamic batch
    expect(report.outputNames).toEqual(['positions', 'uncertainties']);
    expect(report.modelId).toMatch(/^m-[0-9a-f]{32}$/);
    expect(report.modelUri).toBe(`models:/${report.modelId}`);
    expect(report.runModelUri).toBe(`runs:/${logger.runId}/model`);
    // the first epoch's checkpoint too: a second logged model `model` of the run, at that epoch's step
    const first = ckpt.bestK.find((k) => k.epoch === 0)!;
    const early = await trainer.exportOnnx(join(dir, 'epoch0.onnx'), { ckptPath: first.path, validate: false });
    expect(early.modelId).not.toBe(report.modelId);
    await logger.close();

    const tracker = new MLflowTracker({ trackingUri, handleSignals: false });
    try {
      const run = await tracker.getRun(logger.runId!);
      expect(run.info.status).toBe('FINISHED');
      expect(run.tags['heimdall.onnx_sha256']).toBe(early.sha256);  // the run's tag names its latest export
      const model = await tracker.getLoggedModel(report.modelId!);
      expect(model).toMatchObject({ name: 'model', status: 'READY', sourceRunId: logger.runId });
      expect(model.params['model/variant']).toBe('convnext_atto');
      expect(model.tags['heimdall.onnx_sha256']).toBe(report.sha256);
      const root = model.artifactLocation.startsWith('file:') ? fileURLToPath(model.artifactLocation) : model.artifactLocation;
      expect(root).toBe(join(dir, 'artifacts', 'models', report.modelId!, 'artifacts'));
      const logged = readFileSync(join(root, 'model.onnx'));
      expect(createHash('sha256').update(logged).digest('hex')).toBe(report.sha256);
      const mlmodel = readFileSync(join(root, 'MLmodel'), 'utf8');
      expect(mlmodel).toMatch(/onnx:[\s\S]*data: "model\.onnx"/);
      expect(mlmodel).toContain(`model_id: "${report.modelId}"`);
      expect(mlmodel).toContain(`run_id: "${logger.runId}"`);
      // the model's metrics are the run's at the best checkpoint's step (not the last epoch's)
      const best = (await tracker.getMetricHistory('val/loss', logger.runId!)).find((m) => m.value === ckpt.bestModelScore)!;
      expect(best).toBeDefined();
      expect(model.metrics.filter((m) => m.key === 'val/loss')).toEqual([best]);
      expect(new Set(model.metrics.map((m) => m.step))).toEqual(new Set([best.step]));
      // one key style (README, "MLflow keys"); the description says what was trained on what
      for (const k of Object.keys(run.params)) expect(k).toMatch(/^(trainer|optimizer|schedule|model|data|cli)(\/[a-z0-9_]+)+$/);
      for (const k of Object.keys(run.metrics)) expect(k).toMatch(/^((train|val|test)\/[a-z0-9_]+|lr-(AdamW|SGD)|epoch|final_test_[a-z0-9_]+)$/);
      for (const k of Object.keys(run.tags)) expect(k).toMatch(/^(mlflow\.[A-Za-z.]+|heimdall\.[a-z0-9_]+|error\.[a-z]+|model|phase|service)$/);
      expect(run.tags['mlflow.note.content']).toMatch(
        /^heimdall-torch trained convnext_atto with a localization head \([\d.]+M parameters, 3 input channels\) on 60 in-memory samples of shape \[3, 32, 32\] \(\d+ training batches of 16 per epoch\) for up to 3 epochs on cpu at 32-bit precision, with AdamW \(lr 0\.002, weight decay 0\.00001\) and a cosine schedule; training seed 42\.$/);
      const exp = await tracker.getExperiment(run.info.experimentId);
      expect(exp.tags['mlflow.experimentKind']).toBe('custom_model_development');
    } finally {
      await tracker.close();
    }

    const t2 = new MLflowTracker({ trackingUri, handleSignals: false });
    try {
      const firstVal = (await t2.getMetricHistory('val/loss', logger.runId!))[0]!;
      expect(firstVal.step).toBeLessThan(trainer.globalStep);
      expect((await t2.getLoggedModel(early.modelId!)).metrics.filter((m) => m.key === 'val/loss')).toEqual([firstVal]);
      // runs:/<id>/model names the newest logged model `model` of the run
      expect((await t2.searchLoggedModels({ experimentIds: [(await t2.getRun(logger.runId!)).info.experimentId], name: 'model' })).map((m) => m.modelId))
        .toEqual([early.modelId, report.modelId]);
    } finally {
      await t2.close();
    }

    // the current weights, without logging; a checkpoint that is not there is named
    const current = await trainer.exportOnnx(join(dir, 'current.onnx'), { ckptPath: 'current', logModel: false, validate: false });
    expect(current.source).toBe('current');
    expect(current.modelUri).toBeUndefined();
    await expect(trainer.exportOnnx(join(dir, 'x.onnx'), { ckptPath: join(dir, 'missing.safetensors') })).rejects.toThrow(/missing\.safetensors does not exist/);
  }, 180_000);
});

describe('Trainer: callbacks, checkpoints and errors', () => {
  it('two ModelCheckpoints (val/loss, train/loss in its own folder) coexist, and a checkpoint resumes each one', async () => {
    const root = tempDir();
    const mk = () => [
      new ModelCheckpoint({ monitor: 'val/loss', saveTopK: 1 }),
      new ModelCheckpoint({ monitor: 'train/loss', saveTopK: 2, saveLast: false, dirpath: join(root, 'by-train') }),
    ] as const;
    const [byVal, byTrain] = mk();
    expect(byVal.stateKey).toBe('ModelCheckpoint{"monitor":"val/loss","mode":"min"}');
    expect(byTrain.stateKey).toBe(`ModelCheckpoint{"monitor":"train/loss","mode":"min","dirpath":${JSON.stringify(join(root, 'by-train'))}}`);
    const trainer = new Trainer({ ...base, maxEpochs: 2, defaultRootDir: root, callbacks: [byVal, byTrain] });
    await trainer.fit(ConvNeXt.localization('atto', { seed: 8 }), blobData(60, 8));
    expect(byVal.bestK.length).toBe(1);
    expect(byTrain.bestK.length).toBe(2);
    expect(readdirSync(join(root, 'by-train')).filter((f) => f.includes('train_loss=')).length).toBe(2);
    const full = join(root, 'full.safetensors');
    await trainer.saveCheckpoint(full);

    const [val2, train2] = mk();
    const resumed = new Trainer({ ...base, maxEpochs: 2, defaultRootDir: root, callbacks: [train2, val2] });
    await resumed.fit(ConvNeXt.localization('atto', { seed: 8 }), blobData(60, 8), { ckptPath: full });
    expect(val2.bestK).toEqual(byVal.bestK);
    expect(train2.bestK).toEqual(byTrain.bestK);
    expect(resumed.checkpointCallback).toBe(train2);  // the first ModelCheckpoint, as Lightning's trainer.checkpoint_callback
    expect(trainer.checkpointCallback).toBe(byVal);
  });

  it('the same settings twice are refused with a HeimdallError naming the state key', () => {
    let err: unknown;
    try {
      new Trainer({ ...base, callbacks: [new EarlyStopping(), new EarlyStopping({ patience: 9 })] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HeimdallError);
    expect(err).toMatchObject({ code: 'HEIMDALL_INVALID_CONFIG', message: expect.stringContaining('EarlyStopping{"monitor":"val/loss","mode":"min"}') });
    expect(() => new Trainer({ ...base, callbacks: [new EarlyStopping(), new EarlyStopping({ monitor: 'val/mae' })] })).not.toThrow();
  });

  it('reads callback state from checkpoints keyed by class name (written before settings-based keys)', async () => {
    const model = ConvNeXt.localization('atto', { seed: 9 });
    const old = join(tempDir(), 'old.safetensors');
    const engine = new (native().Engine)(model.native, { device: 'cpu', threads: 2 });
    // Old states named kept checkpoints by absolute path: the file name counts, in this callback's folder.
    const root = tempDir();
    mkdirSync(join(root, 'checkpoints'));
    writeFileSync(join(root, 'checkpoints', 'epoch=0-val_loss=-9.0000.safetensors'), 'x');
    const kept = [{ path: '/elsewhere/epoch=0-val_loss=-9.0000.safetensors', score: -1e9, epoch: 0 }];
    await engine.saveCheckpoint(old, JSON.stringify({ trainer: { epoch: 0, globalStep: 0 }, callbacks: { ModelCheckpoint: { kept, lastModelPath: null } } }));
    const ckpt = new ModelCheckpoint({ saveTopK: 5 });
    const trainer = new Trainer({ ...base, maxEpochs: 1, defaultRootDir: root, callbacks: [ckpt] });
    await trainer.fit(model, blobData(60, 9), { ckptPath: old });
    expect(ckpt.bestModelPath).toBe(join(root, 'checkpoints', 'epoch=0-val_loss=-9.0000.safetensors'));
    expect(ckpt.bestK.length).toBe(2);
  });

  it('resuming never deletes files a checkpoint names outside this run\'s checkpoint folder (copied folders, crafted states)', async () => {
    const model = ConvNeXt.localization('atto', { seed: 10 });
    const elsewhere = tempDir();
    const victims = [join(elsewhere, 'epoch=0-val_loss=9.0000.safetensors'), join(elsewhere, 'notes.txt')];
    for (const v of victims) writeFileSync(v, 'keep me');
    const crafted = join(tempDir(), 'crafted.safetensors');
    const engine = new (native().Engine)(model.native, { device: 'cpu', threads: 2 });
    // The worst scores: the first better epoch would rotate them out (rmSync) with saveTopK 1.
    const kept = victims.map((path, i) => ({ path, name: i === 1 ? '../notes.txt' : undefined, score: 1e9 + i, epoch: 0 }));
    const key = new ModelCheckpoint({ saveTopK: 1 }).stateKey;
    await engine.saveCheckpoint(crafted, JSON.stringify({ trainer: { epoch: 0, globalStep: 0 }, callbacks: { [key]: { kept, lastModelPath: null } } }));
    const ckpt = new ModelCheckpoint({ saveTopK: 1 });
    const root = tempDir();
    const trainer = new Trainer({ ...base, maxEpochs: 2, defaultRootDir: root, callbacks: [ckpt] });
    await trainer.fit(model, blobData(60, 10), { ckptPath: crafted });
    for (const v of victims) expect(readFileSync(v, 'utf8')).toBe('keep me');
    expect(ckpt.bestK.length).toBe(1);
    expect(ckpt.bestModelPath!.startsWith(join(root, 'checkpoints'))).toBe(true);
  });

  it('Ctrl-C with a tracker as logger (its signal handling on): fit stops at a batch boundary, checkpoints, ends the run KILLED', async () => {
    const root = tempDir();
    const uri = `sqlite:///${join(root, 'mlflow.db')}`;
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./fixtures/ctrl_c_with_tracker.ts', import.meta.url)), uri, root],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    // Before: the tracker's handler ended the run and exited 130 before fit() reached the batch boundary.
    expect(code, err).toBe(0);
    const result = JSON.parse(/RESULT (.*)/.exec(out)?.[1] ?? 'null') as { reason: string; checkpoint: string | null; complete: boolean } | null;
    expect(result).toMatchObject({ reason: 'interrupted', checkpoint: join(root, 'checkpoints', 'interrupted.safetensors'), complete: true });
    expect(existsSync(result!.checkpoint!)).toBe(true);
    const runId = /RUN ([0-9a-f]{32})/.exec(out)?.[1];
    const t = new MLflowTracker({ trackingUri: uri, handleSignals: false });
    try {
      const info = await t.getRunInfo(runId!);
      expect(info.status).toBe('KILLED');
      expect(info.tags['heimdall.interrupted_by']).toBe('SIGINT');
    } finally {
      await t.close();
    }
  }, 180_000);

  it('a stop during validation records no partial val/*, and validate()/test() after an interrupted fit run in full; the run stays KILLED', async () => {
    const root = tempDir();
    const uri = `sqlite:///${join(root, 'mlflow.db')}`;
    const tracker = new MLflowTracker({ trackingUri: uri, handleSignals: false });
    class StopInValidation extends Callback {
      override onValidationStart(trainer: { currentEpoch: number; stop(reason?: string): void }): void {
        if (trainer.currentEpoch === 1) trainer.stop('test stop');
      }
    }
    const ckpt = new ModelCheckpoint({ saveTopK: 3 });
    const early = new EarlyStopping({ patience: 1 });
    const trainer = new Trainer({ ...base, maxEpochs: 5, defaultRootDir: root, logger: tracker, callbacks: [ckpt, early, new StopInValidation()] });
    const history = await trainer.fit(ConvNeXt.localization('atto', { seed: 12 }), blobData(64, 12));
    expect(history.reason).toBe('interrupted');
    // Epoch 0 complete; epoch 1 trained but its validation was cut short: not recorded, no checkpoint for it.
    expect(history.epochs.map((e) => e.epoch)).toEqual([0]);
    expect(ckpt.bestK.map((k) => k.epoch)).toEqual([0]);
    const val = await trainer.validate();
    expect(Number.isFinite(val['val/loss'])).toBe(true);
    const test = await trainer.test();
    expect(Number.isFinite(test['test/loss'])).toBe(true);
    await tracker.flush();
    const runs = await tracker.searchRuns();
    await tracker.close();
    expect(runs.length).toBe(1);
    expect(runs[0]!.info.status).toBe('KILLED');
    expect(runs[0]!.metrics.final_test_loss).toBeTypeOf('number');
  });

  it('checkpointCallback is the ModelCheckpoint instance, not any callback with a bestModelPath', () => {
    class LooksLikeOne extends Callback {
      readonly bestModelPath = '/not/a/checkpoint.safetensors';
    }
    const none = new Trainer({ ...base, callbacks: [new LooksLikeOne()] });
    expect(none.checkpointCallback).toBeUndefined();
    const ckpt = new ModelCheckpoint();
    const trainer = new Trainer({ ...base, callbacks: [new LooksLikeOne(), ckpt] });
    expectTypeOf(trainer.checkpointCallback).toEqualTypeOf<ModelCheckpoint | undefined>();
    expect(trainer.checkpointCallback).toBe(ckpt);
  });

  it('errors are HeimdallErrors with codes: options (ConfigError), misuse, and the addon\'s own', async () => {
    let err: unknown;
    try {
      new Trainer({ maxEpochs: 0 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toBeInstanceOf(HeimdallError);
    expect((err as HeimdallError).code).toBe('HEIMDALL_INVALID_CONFIG');
    await expect(new Trainer(base).validate()).rejects.toMatchObject({ code: 'HEIMDALL_INVALID_STATE' });
    await expect(new Trainer(base).validate()).rejects.toBeInstanceOf(HeimdallError);
    // the addon's error (an engine of a CUDA device that is not there, or a checkpoint that is not one) arrives as a HeimdallError
    const trainer = new Trainer({ ...base, maxEpochs: 1, defaultRootDir: tempDir() });
    const junk = join(tempDir(), 'junk.safetensors');
    writeFileSync(junk, 'not a checkpoint');
    const rejected = await trainer.fit(ConvNeXt.localization('atto'), blobData(40), { ckptPath: junk }).catch((e: unknown) => e);
    expect(rejected).toBeInstanceOf(HeimdallError);
    expect(rejected).toMatchObject({ code: 'HEIMDALL_BAD_FILE', message: expect.stringContaining(junk) });
  });

  it('SGD with dampening is accepted and reaches the engine', async () => {
    const sgd = (dampening: number) => new Trainer({ ...base, maxEpochs: 1, defaultRootDir: tempDir(), optimizer: { name: 'sgd', lr: 0.05, momentum: 0.9, dampening } });
    const losses = async (t: Trainer) => {
      const seen: number[] = [];
      class Losses extends Callback { override onTrainBatchEnd(_t: unknown, b: TrainBatch) { seen.push(b.metrics['train/loss']!); } }
      t.callbacks.push(new Losses());
      await t.fit(ConvNeXt.localization('atto', { seed: 10 }), blobData(60, 10));
      return seen;
    };
    const a = await losses(sgd(0));
    const b = await losses(sgd(0.9));
    expect(a[0]).toBe(b[0]);               // the same first step (momentum buffers start as the gradient)
    expect(a.at(-1)).not.toBe(b.at(-1));   // then dampening scales the gradient in the buffer
  });

  it('logs params with snake_case keys and tags the run with the model it trained (classification)', async () => {
    const dir = tempDir();
    const trackingUri = `sqlite:///${join(dir, 'mlflow.db')}`;
    const n = 60;
    const { inputs, targets } = blobs(n, 11);
    const classes = Int32Array.from({ length: n }, (_, i) => (targets[2 * i]! > 0 ? 1 : 0));
    const data = new TensorDataModule(inputs, [n, 3, 32, 32], classes, [n], { batchSize: 16, seed: 3 });
    const logger = new MLflowLogger({ runName: 'snake', trackerOptions: { trackingUri, artifactUri: join(dir, 'artifacts') } });
    const trainer = new Trainer({ ...base, maxEpochs: 1, defaultRootDir: dir, logger, schedule: { warmupSteps: 2, minLr: 1e-5 } });
    await trainer.fit(ConvNeXt.classification('atto', 2, { seed: 11 }), data);
    await logger.close();
    const run = JSON.parse(await python(`
import sys, json, mlflow
r = mlflow.MlflowClient(sys.argv[1]).get_run(sys.argv[2])
print(json.dumps({'params': r.data.params, 'tags': r.data.tags}))`, [trackingUri, logger.runId!])) as { params: Record<string, string>; tags: Record<string, string> };
    expect(Object.keys(run.params).filter((k) => /[A-Z]/.test(k))).toEqual([]);
    expect(run.params).toMatchObject({
      'optimizer/weight_decay': String(1e-5), 'optimizer/lr': '0.002', 'schedule/min_lr': String(1e-5), 'schedule/warmup_steps': '2',
      'trainer/grad_clip_norm': '0', 'trainer/max_epochs': '1', 'trainer/accumulate_grad_batches': '1', 'model/head': 'classification',
    });
    expect(run.tags.model).toBe('convnext_atto · classification');
  });
});
