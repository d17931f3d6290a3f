// The REST store against a real `mlflow server` (artifacts through its mlflow-artifacts proxy), and s3://
// artifacts against a real S3-compatible server, each read back by Python MLflow.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { MLflowTracker } from '../../lib/tracking/index.js';
import { mlflowPython } from './helpers/python.js';
import { cleanupTmp, checkReadback, tmp, trackerOptions, writeScenario } from './helpers/scenario.js';

afterAll(cleanupTmp);

const uniq = (p: string) => `${p}-${process.pid}-${Math.floor(Math.random() * 1e6)}`;

describe('REST store (mlflow server)', () => {
  it('writes everything so that Python MLflow reads it back identically (artifacts via mlflow-artifacts:/)', async () => {
    const uri = inject('mlflowUri');
    const t = new MLflowTracker(trackerOptions(uri));
    try {
      const exp = uniq('rest-exp');
      const w = await writeScenario(t, exp, uniq('rest-model'));
      expect(w.run1ArtifactUri).toMatch(/^mlflow-artifacts:\//);
      const py = await mlflowPython({ op: 'read', tracking_uri: uri, experiment: exp, models: [w.model], history_keys: ['train/loss', 'special'] });
      checkReadback(py, w);
    } finally {
      await t.close();
    }
  });

  it('reads a run written by Python MLflow through the server', async () => {
    const uri = inject('mlflowUri');
    const exp = uniq('py-rest');
    const w = await mlflowPython<{ experiment_id: string; run_id: string }>({ op: 'write', tracking_uri: uri, experiment: exp });
    const t = new MLflowTracker(trackerOptions(uri));
    try {
      const info = await t.getRunInfo(w.run_id);
      expect(info.runName).toBe('written-by-python');
      expect(info.status).toBe('FINISHED');
      expect(info.params).toEqual({ lr: '0.01', optimizer: 'sgd' });
      expect(Number.isNaN(info.metrics.nan_metric)).toBe(true);
      const hist = await t.getMetricHistory('val/loss', w.run_id);
      expect(hist.map((m) => m.step)).toEqual([0, 1, 2, 3, 4]);
      const best = await t.getBestRun('val/loss', { experimentIds: [w.experiment_id] });
      expect(best?.runId).toBe(w.run_id);
    } finally {
      await t.close();
    }
  });

  it('reports MLflow errors clearly (unknown run, bad filter)', async () => {
    const t = new MLflowTracker(trackerOptions(inject('mlflowUri'), { httpRequestMaxRetries: 0 }));
    try {
      await expect(t.getRunInfo('0123456789abcdef0123456789abcdef')).rejects.toThrow(/RESOURCE_DOES_NOT_EXIST/);
      await expect(t.searchRuns({ experimentIds: ['0'], filter: 'metrics.val/loss < 1' })).rejects.toThrow(/Invalid filter/);
    } finally {
      await t.close();
    }
  });
});

describe('s3:// artifacts', () => {
  it('uploads files and directories (multipart for large ones) with SHA-256, read back by Python MLflow', async () => {
    const s3 = inject('s3');
    const bucket = uniq('heimdall').toLowerCase();
    const client = new S3Client({
      endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1',
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    const d = tmp('s3');
    const dbUri = `sqlite:///${join(d, 'mlflow.db')}`;
    // the reference's variable names (MLFLOW_S3_ACCESS_KEY_ID/SECRET) as aliases of the AWS ones
    const env = {
      MLFLOW_S3_ENDPOINT_URL: s3.endpoint,
      MLFLOW_S3_ACCESS_KEY_ID: s3.accessKeyId,
      MLFLOW_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
      MLFLOW_ARTIFACT_URI: `s3://${bucket}/mlflow`,
    };
    const t = new MLflowTracker({ ...trackerOptions(dbUri), env });
    try {
      const exp = 's3-exp';
      const w = await writeScenario(t, exp, 'm');
      expect(w.run1ArtifactUri).toBe(`s3://${bucket}/mlflow/${w.run1}/artifacts`);
      // a 17 MiB file: three parts of 8 MiB
      const runId = await t.startRun({ runName: 'big' });
      const big = join(d, 'big.bin');
      const data = Buffer.alloc(17 * 1024 * 1024);
      for (let i = 0; i < data.length; i += 4096) data[i] = i % 251;
      writeFileSync(big, data);
      t.logArtifact(big, 'ckpt');
      const r = await t.endRun();
      expect(r.complete).toBe(true);
      const sha = createHash('sha256').update(data).digest('hex');
      expect(r.uploaded).toEqual([{ path: 'ckpt/big.bin', uri: `s3://${bucket}/mlflow/${runId}/artifacts/ckpt/big.bin`, size: data.length, sha256: sha }]);
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `mlflow/${runId}/artifacts/ckpt/big.bin` }));
      expect(head.ContentLength).toBe(data.length);
      expect(head.Metadata?.sha256).toBe(sha);
      if (s3.kind === 'minio') expect(head.ETag).toMatch(/-3"$/); // a multipart upload of 3 parts

      const py = await mlflowPython(
        { op: 'read', tracking_uri: dbUri, experiment: exp, models: [w.model], history_keys: ['train/loss', 'special'] },
        { MLFLOW_S3_ENDPOINT_URL: s3.endpoint, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_DEFAULT_REGION: 'us-east-1' },
      );
      py.runs = py.runs.filter((x: any) => x.run_id !== runId);
      checkReadback(py, w);
    } finally {
      await t.close();
      client.destroy();
    }
  });
});
