// The same path on a SQLite store with S3 (MinIO) artifacts: checkpoints downloaded from S3 for the export,
// model/ uploaded there, `--best val/loss`, a second version archiving the first in Production, loadModel and
// mlflow.pyfunc reading the model from S3.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { HeimdallDataModule, loadModel, readOnnxInfo } from '../../lib/index.js';
import { python } from '../helpers/python.js';
import { tempDir } from '../helpers/tmp.js';
import { cli, maxAbsDiff, trainTinyRun } from './helpers.js';

const READ = `
import sys, os, json, numpy as np, mlflow
os.environ.update(json.loads(sys.argv[3]))
c = mlflow.MlflowClient(sys.argv[1])
vs = [c.get_model_version(sys.argv[2], str(v)) for v in sorted(int(v.version) for v in c.search_model_versions(f"name='{sys.argv[2]}'"))]
mlflow.set_tracking_uri(sys.argv[1])
m = mlflow.pyfunc.load_model(f'models:/{sys.argv[2]}@prod')
x = np.zeros((2, 7, 128, 32), dtype=np.float32)
y = m.predict({'mel_spectrogram': x})
print(json.dumps({'versions': [{'version': str(v.version), 'stage': v.current_stage, 'source': v.source, 'aliases': list(v.aliases)} for v in vs],
                  'positions': np.asarray(y['positions']).ravel().tolist()}))
`;

describe('export → registry → inference with a SQLite store and S3 (MinIO) artifacts', () => {
  const dir = tempDir('heimdall-inference-s3-');
  const name = `heimdall-s3-${Date.now().toString(36)}`;
  const experiment = 'inference-s3';
  let env: Record<string, string>;
  let runId: string;

  beforeAll(async () => {
    const s3 = inject('s3');
    const bucket = `heimdall-inf-${Date.now().toString(36)}`;
    const client = new S3Client({
      endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    client.destroy();
    env = {
      MLFLOW_TRACKING_URI: `sqlite:///${join(dir, 'mlflow.db')}`,
      MLFLOW_ARTIFACT_URI: `s3://${bucket}/mlflow`,
      MLFLOW_S3_ENDPOINT_URL: s3.endpoint,
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
      AWS_DEFAULT_REGION: 'us-east-1',
    };
    runId = await trainTinyRun(dir, env, experiment);
    await HeimdallDataModule.writeSynthetic(join(dir, 'data'), 6, { seed: 3 });
  }, 180_000);

  it('--best val/loss twice into Production with --archive-existing; Python MLflow and loadModel read the model from S3', async () => {
    const args = ['export', '--best', 'val/loss', '--experiment-name', experiment, '--register', name, '--stage', 'Production', '--archive-existing', '--alias', 'prod'];
    const first = await cli(args, dir, env);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`best run by val/loss (min): ${runId}`);
    expect(first.stdout).toMatch(/checkpoint s3:\/\/.*\/checkpoints\/best\/epoch=0-val_loss=/);
    const second = await cli([...args, '--checkpoint', 'last'], dir, env);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/checkpoint s3:\/\/.*\/checkpoints\/last\/last\.safetensors \(last,/);
    expect(second.stdout).toContain(`registered ${name} version 2 (READY), stage Production, aliases prod`);

    const py = JSON.parse(await python(READ, [env.MLFLOW_TRACKING_URI!, name, JSON.stringify(env)])) as { versions: { version: string; stage: string; source: string; aliases: string[] }[]; positions: number[] };
    expect(py.versions.map((v) => [v.version, v.stage, v.aliases])).toEqual([['1', 'Archived', []], ['2', 'Production', ['prod']]]);
    // each export is a new MLflow 3 logged model of the run, registered as itself
    expect(py.versions.map((v) => v.source)).toEqual([expect.stringMatching(/^models:\/m-[0-9a-f]{32}$/), expect.stringMatching(/^models:\/m-[0-9a-f]{32}$/)]);
    expect(py.versions[1]!.source).not.toBe(py.versions[0]!.source);

    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
    const m = await loadModel(`models:/${name}/Production`, { trackerOptions: { ...trackerOptionsOf(env), dotenvPath: false } });
    try {
      expect(m.source).toMatch(new RegExp(`^${env.MLFLOW_ARTIFACT_URI}/models/${py.versions[1]!.source.slice('models:/'.length)}/artifacts$`));
      expect(m.registered).toMatchObject({ version: '2', stage: 'Production' });
      const p = await m.predict({ features: new Float32Array(2 * 7 * 128 * 32), shape: [2, 7, 128, 32] });
      expect(maxAbsDiff(p.outputs.positions!.data, py.positions)).toBeLessThan(1e-5);
      const d = await m.predictDirectory(join(dir, 'data'));
      expect(d.samples).toHaveLength(6);
      expect(d.error!.mean).toBeGreaterThan(0);
    } finally {
      await m.close();
    }
    await expect(loadModel(`runs:/${runId}/checkpoints/none`, { trackerOptions: trackerOptionsOf(env) })).rejects.toMatchObject({
      code: 'HEIMDALL_NOT_FOUND', message: expect.stringMatching(/artifact s3:\/\/.*\/checkpoints\/none is not there/),
    });
  });

  it('a run trained on a data directory exports after the directory is gone: the data facts come from its data/metadata.json', async () => {
    const data = join(dir, 'captures');
    await HeimdallDataModule.writeSynthetic(data, 40, { seed: 5 });
    const expected = (await HeimdallDataModule.fromDirectory(data, { cache: false })).info.metadataJson;
    const r = await cli(['train', '--backbone', 'convnext_atto', '--epochs', '1', '--data-dir', data, '--batch-size', '8', '--no-export-onnx',
      '--threads', '2', '--experiment-name', `${experiment}-dir`, '--run-name', 'from-dir', '--output-dir', join(dir, 'outputs-dir')], dir, env);
    expect(r.code).toBe(0);
    const id = /MLflow run ([0-9a-f]{32})/.exec(r.stdout)![1]!;
    rmSync(data, { recursive: true });
    const out = join(dir, 'export-dir');
    const e = await cli(['export', '--run', id, '--output', out, '--json'], dir, env);
    expect(e.stderr).toBe('');
    expect(e.code).toBe(0);
    expect(JSON.parse(e.stdout).dataFrom).toMatch(/^s3:\/\/.*\/data\/metadata\.json$/);
    expect((await readOnnxInfo(join(out, 'model.onnx'))).metadata['heimdall.data']).toBe(expected);
  });
});

function trackerOptionsOf(env: Record<string, string>) {
  return {
    trackingUri: env.MLFLOW_TRACKING_URI, artifactUri: env.MLFLOW_ARTIFACT_URI, s3EndpointUrl: env.MLFLOW_S3_ENDPOINT_URL,
    awsAccessKeyId: env.AWS_ACCESS_KEY_ID, awsSecretAccessKey: env.AWS_SECRET_ACCESS_KEY,
  };
}
