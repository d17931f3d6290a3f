// MLflow 3 logged models (issue 15, part 1): the exported ONNX model becomes a LoggedModel of its run in every
// store — SQLite with local artifacts, PostgreSQL with S3 (MinIO) artifacts, the mlflow server with proxied
// artifacts — read back by the pinned Python MLflow (search_logged_models, get_logged_model, the run's outputs,
// pyfunc.load_model('models:/<id>') and 'runs:/<id>/model', the registered version's source), loaded by our
// loadModel. Then the MLflow 2.9 database (made by the real MLflow 2.9 client) and a server without the
// logged-models API: the model is the run's `model/` artifact, with one warning, and nothing fails.
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { HeimdallDataModule } from '../../lib/data/heimdall.js';
import { loadModel } from '../../lib/inference/index.js';
import { ConvNeXt } from '../../lib/model.js';
import { exportOnnx, type OnnxExportReport } from '../../lib/onnx/export.js';
import { logOnnxModel } from '../../lib/onnx/mlflow_model.js';
import { registerOnnxModel } from '../../lib/onnx/run_export.js';
import { MLflowTracker, type MLflowTrackerOptions } from '../../lib/tracking/index.js';
import { datasetByPrefix, METRIC_CONTEXTS, UNSUPPORTED_WARNING } from '../../lib/tracking/logged_models.js';
import { MLflowLogger } from '../../lib/trainer/callbacks/mlflow_logger.js';
import { mlflow29Python, mlflowPython } from './helpers/python.js';
import { cleanupTmp, tmp, trackerOptions } from './helpers/scenario.js';
import { createPgDatabase } from './helpers/services.js';

const uniq = (p: string) => `${p}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
const INPUT = { name: 'mel_spectrogram', shape: [2, 7, 128, 32] };

let report: OnnxExportReport;
beforeAll(async () => {
  const d = tmp('onnx');
  const data = HeimdallDataModule.synthetic({ samples: 3, seed: 1, cache: false });
  const model = ConvNeXt.localization('convnext_atto', { inChans: 7, seed: 5 });
  report = await exportOnnx(model.native, join(d, 'model.onnx'), {
    inputShape: [7, 128, 32], validate: false, metadata: { 'heimdall.data': data.info.metadataJson },
  });
}, 180_000);
afterAll(() => cleanupTmp());

/** The synthetic data's dataset inputs (training, validation, testing), as the MLflowLogger logs them in fit. */
const DATASETS = HeimdallDataModule.synthetic({ samples: 30, seed: 1, cache: false }).mlflowDatasets();

/** A run with params, dataset inputs and metrics at steps 5, 10, 15; the model is exported from the checkpoint of step 10. */
async function trainedRun(t: MLflowTracker, experiment: string): Promise<string> {
  const runId = await t.startRun({ runName: 'logged-model', experimentId: await t.getOrCreateExperiment(experiment) });
  t.logParams({ lr: 0.001, model: { variant: 'convnext_atto' } });
  t.logInputs(DATASETS);
  t.logMetrics({ 'val/loss': 0.9, 'train/loss_epoch': 1.1 }, 5);
  t.logMetrics({ 'val/loss': 0.5, 'train/loss_epoch': 0.8 }, 10);
  t.logMetrics({ 'val/loss': 0.6 }, 15);
  expect((await t.endRun('FINISHED')).complete).toBe(true);
  return runId;
}

/** Logs the ONNX model as the MLflowLogger does after fit (it reopens the run, logs, ends it as it was). */
async function logThroughLogger(t: MLflowTracker, runId: string, step: number) {
  const logger = new MLflowLogger({ tracker: t });
  logger.loadStateDict({ runId });
  return logOnnxModel(report, join(tmp('mlmodel'), 'mlflow-model'), logger, '/ckpt/epoch=1.safetensors', step);
}

interface Backend { name: string; make: () => Promise<{ options: MLflowTrackerOptions; python: string; env: Record<string, string> }> }

const backends: Backend[] = [
  {
    name: 'SQLite, local artifacts',
    make: async () => {
      const d = tmp('lm-sqlite');
      const uri = `sqlite:///${join(d, 'mlflow.db')}`;
      return { options: trackerOptions(uri, { artifactUri: join(d, 'artifacts') }), python: uri, env: {} };
    },
  },
  {
    name: 'PostgreSQL, S3 artifacts',
    make: async () => {
      const uri = (await createPgDatabase(inject('pgUri'), 'logged_models')).replace(/^postgresql:\/\//, 'postgresql+psycopg2://');
      const s3 = inject('s3');
      const bucket = uniq('models').toLowerCase();
      const client = new S3Client({
        endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      });
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      client.destroy();
      return {
        options: trackerOptions(uri, {
          artifactUri: `s3://${bucket}/mlflow`, s3EndpointUrl: s3.endpoint, awsAccessKeyId: s3.accessKeyId, awsSecretAccessKey: s3.secretAccessKey,
        }),
        python: uri,
        env: { MLFLOW_S3_ENDPOINT_URL: s3.endpoint, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_DEFAULT_REGION: 'us-east-1' },
      };
    },
  },
  {
    name: 'mlflow server, proxied artifacts',
    make: async () => ({ options: trackerOptions(inject('mlflowUri')), python: inject('mlflowUri'), env: {} }),
  },
];

describe.each(backends)('logged model: $name', ({ make }) => {
  it('the exported model is a READY logged model of its run: Python MLflow finds, loads and registers it; so do we', async () => {
    const b = await make();
    const experiment = uniq('logged-models');
    const t = new MLflowTracker({ ...b.options, experimentName: experiment });
    try {
      const runId = await trainedRun(t, experiment);
      const logged = await logThroughLogger(t, runId, 10);
      expect(logged.modelId).toMatch(/^m-[0-9a-f]{32}$/);
      expect(logged.modelUri).toBe(`models:/${logged.modelId}`);
      expect(logged.runModelUri).toBe(`runs:/${runId}/model`);
      expect(t.warnings.filter((w) => w.includes('no logged models'))).toEqual([]);

      const name = uniq('heimdall-loc');
      const mv = await registerOnnxModel(t, runId, { name, modelUri: logged.modelUri });
      expect(mv).toMatchObject({ source: `models:/${logged.modelId}`, runId, status: 'READY' });
      // registering runs:/<id>/model finds the same logged model (as MLflow 3's register_model does)
      const mv2 = await registerOnnxModel(t, runId, { name });
      expect(mv2.source).toBe(`models:/${logged.modelId}`);

      const py = await mlflowPython({
        op: 'logged_models', tracking_uri: b.python, experiment, run_id: runId, input: INPUT, registered: name,
      }, b.env);
      expect(py.experiment_tags['mlflow.experimentKind']).toBe('custom_model_development');
      expect(py.models).toHaveLength(1);
      const m = py.models[0];
      expect(m).toMatchObject({ model_id: logged.modelId, name: 'model', status: 'READY', source_run_id: runId });
      expect(m.artifact_location).toMatch(new RegExp(`/models/${logged.modelId}/artifacts$`));
      expect(m.params).toEqual({ lr: '0.001', 'model/variant': 'convnext_atto' });
      // the checkpoint's metrics: what the run logged at its step, and only that, each with the split it was
      // measured on (the model page's "Datasets used")
      const ds = (context: string) => DATASETS.find((d) => d.tags.some((t) => t.key === 'mlflow.data.context' && t.value === context))!.dataset;
      expect(m.metrics).toEqual([
        ['train/loss_epoch', 0.8, 10, runId, ds('training').name, ds('training').digest],
        ['val/loss', 0.5, 10, runId, ds('validation').name, ds('validation').digest],
      ]);
      expect(m.tags['heimdall.onnx_sha256']).toBe(report.sha256);
      expect(m.tags['heimdall.variant']).toBe('convnext_atto');
      // the model page's description: what, from which checkpoint and step, input → outputs, the check against libtorch
      expect(m.tags['mlflow.note.content']).toBe(
        `ONNX export (opset 17, IR ${report.irVersion}) of convnext_atto with a localization head, ${report.parameters.toLocaleString('en-US')} weights, ` +
        'from the checkpoint epoch=1.safetensors (step 10). Input mel_spectrogram [batch, 7, 128, 32] → positions, uncertainties. ' +
        'Not checked against libtorch at export (validate: false).');
      expect(m.tags['mlflow.source.type']).toBe('LOCAL');
      expect(JSON.parse(m.tags['mlflow.modelVersions'])).toEqual([{ name, version: 1 }, { name, version: 2 }]);
      expect(m.artifacts).toEqual(['MLmodel', 'conda.yaml', 'model.onnx', 'python_env.yaml', 'requirements.txt']);
      expect(py.run_outputs).toEqual([[logged.modelId, 10]]);
      expect(py.run_tags['heimdall.onnx_sha256']).toBe(report.sha256);
      expect(py.run_artifacts).not.toContain('model');  // as Python's log_model: the files are the model's
      expect(py.by_id_model_id).toBe(logged.modelId);
      expect(py.by_run_model_id).toBe(logged.modelId);
      expect(py.by_run).toEqual(py.by_id);
      expect(py.registered_model_id).toBe(logged.modelId);
      expect(py.versions.map((v: any) => [v.source, v.run_id, v.status])).toEqual([
        [`models:/${logged.modelId}`, runId, 'READY'], [`models:/${logged.modelId}`, runId, 'READY']]);

      // our loadModel: models:/<model_id>, runs:/<run_id>/model and the registered version give pyfunc's numbers
      const x = new Float32Array(INPUT.shape.reduce((a, c) => a * c)).fill(1);
      for (const uri of [logged.modelUri, logged.runModelUri, `models:/${name}/1`]) {
        const ours = await loadModel(uri, { tracker: t });
        try {
          const p = await ours.predict({ features: x, shape: INPUT.shape });
          const got = Array.from(p.outputs.positions!.data);
          expect(got.length).toBe(py.by_id.positions.length);
          expect(Math.max(...got.map((v, i) => Math.abs(v - py.by_id.positions[i])))).toBeLessThan(1e-4);
        } finally {
          await ours.close();
        }
      }
    } finally {
      await t.close();
    }
  }, 240_000);
});

describe('logged model status', () => {
  it('is FAILED when writing its files fails; the error is the caller\'s, the run is untouched', async () => {
    const d = tmp('lm-failed');
    const experiment = uniq('failed');
    const t = new MLflowTracker({ ...trackerOptions(`sqlite:///${join(d, 'mlflow.db')}`, { artifactUri: join(d, 'artifacts') }), experimentName: experiment });
    try {
      const runId = await trainedRun(t, experiment);
      await t.startRun({ runId });
      await expect(t.logModel(() => { throw new Error('disk full while writing MLmodel'); }, { name: 'broken', step: 5 })).rejects.toThrow('disk full while writing MLmodel');
      const [m] = await t.searchLoggedModels({ name: 'broken' });
      expect(m).toMatchObject({ name: 'broken', status: 'FAILED', sourceRunId: runId });
      await expect(loadModel(`models:/${m!.modelId}`, { tracker: t })).rejects.toMatchObject({ code: 'HEIMDALL_NOT_FOUND', message: expect.stringContaining('FAILED, not READY') });
      expect((await t.endRun('FINISHED')).complete).toBe(true);
      expect((await t.getRunInfo(runId)).metrics).toEqual({ 'val/loss': 0.6, 'train/loss_epoch': 0.8 });
    } finally {
      await t.close();
    }
  }, 120_000);
});

describe('stores without logged models (MLflow 2.x)', () => {
  it('an MLflow 2.9 database: the model is the run\'s model/ artifact, one warning, the schema untouched', async () => {
    const d = tmp('lm-29');
    const uri = `sqlite:///${join(d, 'mlflow.db')}`;
    const py29 = mlflow29Python();
    const created = await mlflowPython({ op: 'columns', tracking_uri: uri }, {}, py29);  // MLflow 2.9's own migrations
    expect(created.revision).toBe('acf3f17fdcc7');
    expect(Object.keys(created.tables)).not.toContain('logged_models');
    const experiment = uniq('on-29');
    const t = new MLflowTracker({ ...trackerOptions(uri, { artifactUri: join(d, 'artifacts') }), experimentName: experiment });
    try {
      const runId = await trainedRun(t, experiment);
      const first = await logThroughLogger(t, runId, 10);
      expect(first).toEqual({ modelUri: `runs:/${runId}/model`, runModelUri: `runs:/${runId}/model`, modelId: null });
      await logThroughLogger(t, runId, 10);  // a second export: no second warning
      expect(t.warnings.filter((w) => w === UNSUPPORTED_WARNING)).toHaveLength(1);
      expect(await t.searchLoggedModels()).toEqual([]);
      const mv = await registerOnnxModel(t, runId, { name: uniq('on-29') });
      expect(mv.source).toBe(`${(await t.getRunInfo(runId)).artifactUri}/model`);
      const ours = await loadModel(`runs:/${runId}/model`, { tracker: t });
      await ours.close();
      const py = await mlflowPython({ op: 'read', tracking_uri: uri, experiment }, {}, py29);
      expect(py.runs[0].status).toBe('FINISHED');
      expect(py.runs[0].tags['heimdall.onnx_sha256']).toBe(report.sha256);
      expect(py.runs[0].artifacts.map((a: [string, number]) => a[0])).toEqual(expect.arrayContaining(['model/MLmodel', 'model/model.onnx']));
      expect(readFileSync(join(d, 'artifacts', runId, 'artifacts', 'model', 'MLmodel'), 'utf8')).not.toContain('model_id');
    } finally {
      await t.close();
    }
    const after = await mlflowPython({ op: 'describe', tracking_uri: uri }, {}, py29);
    expect(after).toEqual(created);
  }, 180_000);

  it('a server without the logged-models API (404, as MLflow 2.x answers): the run\'s model/ artifact, one warning', async () => {
    // No MLflow 2.x server can run here (the 2.9 venv holds mlflow-skinny, without the server): the pinned server
    // behind a proxy that answers the logged-models endpoints and runs/outputs with Flask's 404 page, as 2.x does.
    const target = new URL(inject('mlflowUri'));
    const refused: string[] = [];
    const proxy = http.createServer((req, res) => {
      if (/\/api\/2\.0\/mlflow\/(logged-models|runs\/outputs)/.test(req.url ?? '')) {
        refused.push(`${req.method} ${req.url}`);
        res.writeHead(404, { 'Content-Type': 'text/html' }).end('<!doctype html><title>404 Not Found</title><h1>Not Found</h1>');
        return;
      }
      const up = http.request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.writeHead(502).end());
      req.pipe(up);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const uri = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const experiment = uniq('old-server');
    const t = new MLflowTracker({ ...trackerOptions(uri), experimentName: experiment });
    try {
      const runId = await trainedRun(t, experiment);
      const logged = await logThroughLogger(t, runId, 10);
      expect(logged.modelId).toBeNull();
      expect(logged.modelUri).toBe(`runs:/${runId}/model`);
      expect(t.warnings.filter((w) => w === UNSUPPORTED_WARNING)).toHaveLength(1);
      expect(refused[0]).toBe('POST /api/2.0/mlflow/logged-models');
      const ours = await loadModel(logged.modelUri, { tracker: t });
      await ours.close();
      const py = await mlflowPython({ op: 'read', tracking_uri: inject('mlflowUri'), experiment });
      expect(py.runs[0].artifacts.map((a: [string, number]) => a[0])).toEqual(expect.arrayContaining(['model/MLmodel', 'model/model.onnx']));
    } finally {
      await t.close();
      proxy.close();
    }
  }, 180_000);
});

describe('the dataset of a logged model metric', () => {
  it('is the run\'s one dataset input of the context the key\'s prefix names; none or several: no dataset', () => {
    const train = { name: 'd-train', digest: 'a1', context: 'training' };
    const val1 = { name: 'd-val', digest: 'b1', context: 'validation' };
    const val2 = { name: 'd-val2', digest: 'b2', context: 'validation' };
    const of = datasetByPrefix([train, val1, val2, { name: 'x', digest: 'c', context: null }], METRIC_CONTEXTS);
    expect(of('train/loss_epoch')).toEqual(train);
    expect(of('val/loss')).toBeUndefined(); // two validation datasets: which one is unknown
    expect(of('test/loss')).toBeUndefined(); // no testing input
    expect(of('epoch')).toBeUndefined();
    expect(datasetByPrefix([train], { 'fit/': 'training' })('fit/loss')).toEqual(train);
  });
});
