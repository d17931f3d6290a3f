// The whole path on the real services: a tiny training run on the mlflow server (artifacts through its proxy)
// → `heimdall-torch export --run … --register … --stage Staging --alias champion` → read back with the Python
// MLflow client (version source, stage, alias, tags; mlflow.pyfunc predicts what we predict) → loadModel through
// every URI form → the predict CLI. Then the same through a SQLite store with S3 (MinIO) artifacts.
import { copyFileSync, existsSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { ConvNeXt, HeimdallDataModule, loadModel, MLflowTracker, native, type NativeEngine } from '../../lib/index.js';
import { python } from '../helpers/python.js';
import { tempDir } from '../helpers/tmp.js';
import { cli, maxAbsDiff, trainTinyRun } from './helpers.js';

const uniq = (p: string) => `${p}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;

const READ_BACK = `
import sys, json, numpy as np, mlflow
uri, name, run_id, feats, shape = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
c = mlflow.MlflowClient(uri)
mv = c.get_model_version(name, '1')
alias = c.get_model_version_by_alias(name, 'champion')
run = c.get_run(run_id)
mlflow.set_tracking_uri(uri)
models = [m for m in mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format='list') if m.source_run_id == run_id]
arts = [f'{m.name}/{a.path}' for m in models for a in c.list_logged_model_artifacts(m.model_id)]
m = mlflow.pyfunc.load_model(f'models:/{name}/Staging')
x = np.fromfile(feats, dtype=np.float32).reshape(shape)
y = m.predict({'mel_spectrogram': x})
print(json.dumps({
  'source': mv.source, 'run_id': mv.run_id, 'stage': mv.current_stage, 'status': mv.status, 'aliases': list(mv.aliases),
  'tags': mv.tags, 'description': mv.description, 'alias_version': alias.version,
  'run_tags': run.data.tags, 'run_status': run.info.status, 'artifact_uri': run.info.artifact_uri, 'artifacts': arts,
  'models': [[lm.model_id, lm.name, str(lm.status), json.loads(lm.tags.get('mlflow.modelVersions', 'null'))] for lm in models],
  'positions': np.asarray(y['positions']).ravel().tolist(), 'uncertainties': np.asarray(y['uncertainties']).ravel().tolist(),
}))
`;

describe('export → MLflow registry → inference (mlflow server, proxied artifacts)', () => {
  const dir = tempDir('heimdall-inference-');
  const name = uniq('heimdall-loc');
  const experiment = uniq('inference');
  let env: Record<string, string>;
  let runId: string;
  let exportOut: string;
  const dataDir = join(dir, 'data');

  beforeAll(async () => {
    env = { MLFLOW_TRACKING_URI: inject('mlflowUri') };
    runId = await trainTinyRun(dir, env, experiment);
    await HeimdallDataModule.writeSynthetic(dataDir, 12, { seed: 7 });
  }, 180_000);

  it('exports the run, logs it as the run\'s MLflow logged model, registers it in Staging with the alias champion', async () => {
    const out = join(dir, 'export');
    const r = await cli(['export', '--run', runId, '--register', name, '--stage', 'Staging', '--alias', 'champion', '--output', out], dir, env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/checkpoint mlflow-artifacts:.*checkpoints\/best\/epoch=0-val_loss=.*\.safetensors \(best, convnext_atto localization head/);
    expect(r.stdout).toMatch(/onnxruntime-node .* vs libtorch on batches 1, 4: max \|Δ\| .* → PASSED/);
    expect(r.stdout).toMatch(/model URI models:\/m-[0-9a-f]{32}\n/);  // the run's MLflow 3 logged model
    expect(r.stdout).toContain(`also runs:/${runId}/model`);
    expect(r.stdout).toContain(`registered ${name} version 1 (READY), stage Staging, aliases champion`);
    expect(existsSync(join(out, 'model.onnx'))).toBe(true);
    expect(existsSync(join(out, 'mlflow-model', 'MLmodel'))).toBe(true);
    exportOut = out;
  });

  it('Python MLflow reads the version back, and mlflow.pyfunc predicts what loadModel predicts', async () => {
    expect(exportOut).toBeDefined();
    const ours = await loadModel(`models:/${name}/Staging`, { trackerOptions: { trackingUri: env.MLFLOW_TRACKING_URI } });
    try {
      // IQ → features natively, with the model's own feature constants
      const iq = await import('../../lib/data/npy.js').then((m) => m.loadNpy(join(dataDir, '000003_iq.npy')));
      const f = ours.featuresOfIq({ iq: iq.data, shape: [1, ...iq.shape.slice(0, -1)] });
      expect(f.shape).toEqual([1, 7, 128, 32]);
      const feats = join(dir, 'feats.f32');
      writeFileSync(feats, Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength));
      const py = JSON.parse(await python(READ_BACK, [env.MLFLOW_TRACKING_URI!, name, runId, feats, JSON.stringify(f.shape)])) as Record<string, any>;
      // registered from the run's MLflow 3 logged model, as MLflow 3 registers: source models:/<model_id>
      expect(py.models).toEqual([[expect.stringMatching(/^m-[0-9a-f]{32}$/), 'model', 'READY', [{ name, version: 1 }]]]);
      expect(py.source).toBe(`models:/${py.models[0][0]}`);
      expect(py.run_id).toBe(runId);
      expect(py.stage).toBe('Staging');
      expect(py.status).toBe('READY');
      expect(py.aliases).toEqual(['champion']);
      expect(py.alias_version).toBe('1');
      expect(py.description).toBe(`heimdall-torch ONNX export of run ${runId}`);
      expect(py.tags['heimdall.variant']).toBe('convnext_atto');
      expect(py.tags['heimdall.onnx_sha256']).toMatch(/^[0-9a-f]{64}$/);
      expect(py.run_tags['heimdall.onnx_sha256']).toBe(py.tags['heimdall.onnx_sha256']);
      expect(py.run_status).toBe('FINISHED');
      expect(py.artifacts).toEqual(expect.arrayContaining(['model/MLmodel', 'model/model.onnx']));

      const p = await ours.predict({ features: f.data, shape: f.shape });
      expect(maxAbsDiff(p.outputs.positions!.data, py.positions)).toBeLessThan(1e-5);
      expect(maxAbsDiff(p.outputs.uncertainties!.data, py.uncertainties)).toBeLessThan(1e-5);
      // predict() on the IQ itself gives the same
      const q = await ours.predict({ iq: iq.data, shape: iq.shape.slice(0, -1) });
      expect(maxAbsDiff(q.outputs.positions!.data, p.outputs.positions!.data)).toBe(0);
      // de-normalised with the data's normalisation into the receivers' area
      const s = ours.metadata.normalization!;
      expect(p.positions[0]!.lat).toBeCloseTo(s.latCenter + p.outputs.positions!.data[0]! * s.latHalfRange, 10);
      expect(Math.abs(p.positions[0]!.lat - s.latCenter)).toBeLessThan(3 * s.latHalfRange);
      expect(p.positions[0]!.sigmaLatM).toBeGreaterThan(0);
      expect(ours.registered).toMatchObject({ name, version: '1', stage: 'Staging', aliases: ['champion'], runId });
    } finally {
      await ours.close();
    }
  });

  it('loadModel resolves every URI form to the same model; features match the training data path exactly', async () => {
    expect(exportOut).toBeDefined();
    const tracker = new MLflowTracker({ trackingUri: env.MLFLOW_TRACKING_URI, handleSignals: false });
    const uris = [`models:/${name}/Staging`, `models:/${name}/staging`, `models:/${name}@champion`, `models:/${name}/1`, `models:/${name}/latest`,
      `runs:/${runId}/model`, join(exportOut, 'mlflow-model'), join(exportOut, 'model.onnx')];
    const results: Float32Array[] = [];
    try {
      for (const u of uris) {
        const m = await loadModel(u, { tracker });
        try {
          expect(m.metadata).toMatchObject({ variant: 'convnext_atto', head: 'localization', inChans: 7, inputName: 'mel_spectrogram', inputShape: [7, 128, 32] });
          const p = await m.predictDirectory(dataDir);
          expect(p.samples.map((x) => x.id)).toEqual(Array.from({ length: 12 }, (_, i) => String(i).padStart(6, '0')));
          expect(p.error!.count).toBe(12);
          results.push(p.prediction.outputs.positions!.data);
        } finally {
          await m.close();
        }
      }
    } finally {
      await tracker.close();
    }
    for (const r of results) expect(maxAbsDiff(r, results[0]!)).toBe(0);

    // The same checkpoint in libtorch on the directory data set (features computed by the training data path).
    const best = readFileSync(join(exportOut, 'mlflow-model', 'MLmodel'), 'utf8');
    expect(best).toContain('heimdall.checkpoint');
    const ckpt = /"heimdall\.checkpoint": "([^"]+)"/.exec(best)![1]!;
    const local = join(dir, 'outputs', 'checkpoints', ckpt.split('/').pop()!);
    const model = ConvNeXt.localization('convnext_atto', { inChans: 7 });
    await model.loadWeights(local);
    const data = await HeimdallDataModule.fromDirectory(dataDir);
    const engine = new (native().Engine)(model.native, { device: 'cpu' }) as NativeEngine;
    const torch = await engine.predict(data.dataset, { batchSize: 12 });
    expect(maxAbsDiff(torch.positions!.data, results[0]!)).toBeLessThan(1e-4);
  });

  it('the predict CLI prints positions and the error vs labels, and writes JSON and CSV', async () => {
    expect(exportOut).toBeDefined();
    const json = join(dir, 'preds.json');
    const r = await cli(['predict', '--model', `models:/${name}@champion`, '--data-dir', dataDir, '--output', json, '--limit', '3'], dir, env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`= ${name} v1 (Staging): convnext_atto, 7 receivers`);
    expect(r.stdout).toMatch(/12 samples from/);
    expect(r.stdout).toMatch(/… 9 more in/);
    expect(r.stdout).toMatch(/position error \(12 labelled\): mean \d+ m {2}median \d+ m {2}p68 \d+ m {2}p95 \d+ m/);
    const doc = JSON.parse(readFileSync(json, 'utf8')) as { count: number; samples: { lat: number; errorM: number }[]; error: { mean: number } };
    expect(doc.count).toBe(12);
    expect(doc.samples[0]!.errorM).toBeGreaterThan(0);
    expect(doc.error.mean).toBeCloseTo(doc.samples.reduce((a, s) => a + s.errorM, 0) / 12, 6);
    const csv = join(dir, 'preds.csv');
    const c = await cli(['predict', '--model', join(exportOut, 'model.onnx'), '--data-dir', dataDir, '--output', csv, '--limit', '0'], dir, {});
    expect(c.code).toBe(0);
    const lines = readFileSync(csv, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('id,lat,lon,sigma_lat_m,sigma_lon_m,label_lat,label_lon,error_m');
    expect(lines).toHaveLength(13);
    expect(Number(lines[1]!.split(',')[1])).toBeCloseTo(doc.samples[0]!.lat, 9);
  });

  describe('bad input: one clear error naming what is wrong', () => {
    const load = (uri: string) => loadModel(uri, { trackerOptions: { trackingUri: env.MLFLOW_TRACKING_URI } });

    it('unknown registered model, stage, alias, version; an artifact that is not there', async () => {
      await expect(load(`models:/${name}-nope/Staging`)).rejects.toMatchObject({ code: 'HEIMDALL_NOT_FOUND', message: expect.stringMatching(`no registered model named '${name}-nope'`) });
      await expect(load(`models:/${name}/Production`)).rejects.toThrow(`registered model '${name}' has no version in stage Production (latest per stage: 1 (Staging))`);
      await expect(load(`models:/${name}/Bogus`)).rejects.toMatchObject({ code: 'HEIMDALL_INVALID_ARGUMENT', message: expect.stringMatching(/'Bogus' is neither a version number, 'latest', nor a stage/) });
      await expect(load(`models:/${name}@nope`)).rejects.toThrow(`registered model '${name}' has no alias 'nope' (aliases: champion)`);
      await expect(load(`models:/${name}/7`)).rejects.toThrow(`registered model '${name}' has no version 7`);
      await expect(load(`runs:/${runId}/nothing-here`)).rejects.toMatchObject({ code: 'HEIMDALL_NOT_FOUND', message: expect.stringMatching(/artifact mlflow-artifacts:.*\/nothing-here is not there/) });
      await expect(load('runs:/0123456789abcdef0123456789abcdef/model')).rejects.toThrow(/run '0123456789abcdef0123456789abcdef' does not exist/);
      await expect(load(join(dir, 'missing.onnx'))).rejects.toThrow(`artifact ${join(dir, 'missing.onnx')} is not there`);
    });

    it('a truncated ONNX file, features of the wrong shape', async () => {
      const cut = join(dir, 'cut.onnx');
      copyFileSync(join(exportOut, 'model.onnx'), cut);
      truncateSync(cut, Math.floor(statSync(cut).size / 2));
      await expect(load(cut)).rejects.toMatchObject({ code: 'HEIMDALL_BAD_FILE', message: expect.stringMatching(`${cut} is truncated`) });
      const m = await load(join(exportOut, 'model.onnx'));
      try {
        await expect(m.predict({ features: new Float32Array(6 * 128 * 32), shape: [1, 6, 128, 32] })).rejects.toMatchObject({
          code: 'HEIMDALL_SHAPE_MISMATCH', message: expect.stringMatching(/features have channels 6, the model .* takes \[7, 128, 32\]/),
        });
        await expect(m.predict({ iq: new Float32Array(2 * 5 * 4096), shape: [5, 4096] })).rejects.toThrow(/the IQ has 5 receivers, the model .* takes 7/);
      } finally {
        await m.close();
      }
    });

    it('export: a truncated checkpoint, another variant or head, a run without checkpoints, an unknown run', async () => {
      const ckpts = join(dir, 'outputs', 'checkpoints');
      const cut = join(dir, 'cut.safetensors');
      copyFileSync(join(ckpts, 'last.safetensors'), cut);
      truncateSync(cut, statSync(cut).size - 1000);
      let r = await cli(['export', '--run', runId, '--checkpoint', cut], dir, env);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toMatch(new RegExp(`^heimdall-torch: checkpoint ${cut} is truncated: its tensors need \\d+ bytes, the file has \\d+`));

      const femto = join(dir, 'femto.safetensors');
      await ConvNeXt.localization('convnext_femto', { inChans: 7 }).saveWeights(femto);
      r = await cli(['export', '--run', runId, '--checkpoint', femto], dir, env);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`checkpoint ${femto} holds a convnext_femto localization model with 7 input channels, but run ${runId} trained convnext_atto localization with 7`);

      const cls = join(dir, 'cls.safetensors');
      await ConvNeXt.classification('convnext_atto', 5, { inChans: 7 }).saveWeights(cls);
      r = await cli(['export', '--run', runId, '--checkpoint', cls], dir, env);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`holds a convnext_atto classification model`);

      const t = new MLflowTracker({ trackingUri: env.MLFLOW_TRACKING_URI, experimentName: experiment, handleSignals: false });
      const empty = await t.startRun({ runName: 'no-checkpoints' });
      await t.close();
      r = await cli(['export', '--run', empty], dir, env);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`run ${empty} has no checkpoint artifacts \\(checkpoints/best, checkpoints/last under mlflow-artifacts:.*\\): train it with checkpoints logged`));

      r = await cli(['export', '--run', 'ffffffffffffffffffffffffffffffff'], dir, env);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/--run: no run 'ffffffffffffffffffffffffffffffff' in http:\/\/127\.0\.0\.1/);

      r = await cli(['export'], dir, env);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/give exactly one of --run <id> or --best <metric>/);
    });
  });
});
