// The one map from a tracking URI to a store (and the configuration's validation, which reads the same table),
// and the one map from an artifact location to an artifact repository — against the real PostgreSQL, mlflow
// server and S3 server of the global setup.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ConfigError, loadTrackerConfig, type TrackerConfig } from '../../lib/config.js';
import { artifactRepositoryFor } from '../../lib/tracking/artifacts.js';
import { MlflowError } from '../../lib/tracking/errors.js';
import { parseArtifactLocation, parseTrackingUri, SUPPORTED_TRACKING_SCHEMES } from '../../lib/tracking/schemes.js';
import { createStore, openStore } from '../../lib/tracking/stores.js';
import { REST_BATCH_LIMITS, SQL_BATCH_LIMITS } from '../../lib/tracking/validation.js';
import { cleanupTmp, tmp } from './helpers/scenario.js';
import { createPgDatabase } from './helpers/services.js';

afterAll(cleanupTmp);

const config = (trackingUri: string, extra: Record<string, unknown> = {}): TrackerConfig =>
  loadTrackerConfig({ trackingUri, ...extra }, { env: {}, dotenvPath: false });

describe('tracking URI → store', () => {
  it('every supported scheme opens its kind of store, which declares its kind and batch limits', async () => {
    const pgUri = await createPgDatabase(inject('pgUri'), 'schemes'); // postgresql://…
    const cases: [string, 'sqlite' | 'postgresql' | 'rest'][] = [
      [`sqlite:///${join(tmp('schemes'), 'm.db')}`, 'sqlite'],
      [pgUri, 'postgresql'],
      [pgUri.replace(/^postgresql:/, 'postgresql+psycopg2:'), 'postgresql'],
      [pgUri.replace(/^postgresql:/, 'postgres:'), 'postgresql'],
      [inject('mlflowUri'), 'rest'],
    ];
    for (const [uri, kind] of cases) {
      expect(parseTrackingUri(uri)).toEqual({ kind, problem: null });
      const store = await openStore(config(uri));
      try {
        expect(store.kind).toBe(kind);
        expect(store.limits).toEqual(kind === 'rest' ? REST_BATCH_LIMITS : SQL_BATCH_LIMITS);
        expect(await store.getExperimentByName('Default')).not.toBeUndefined(); // it answers
      } finally {
        await store.close();
      }
    }
    expect(REST_BATCH_LIMITS).toEqual({ metrics: 1000, params: 100, tags: 100, total: 1000 });
    expect(parseTrackingUri('HTTPS://mlflow.example:5000').kind).toBe('rest');
  });

  it('an unsupported scheme gets one error naming the supported ones, from the configuration and from createStore alike', () => {
    for (const uri of ['mysql://root:zz-map-secret-1@db/x', 'postgresql+pg8000://u@h/db', 'file:///tmp/mlruns', 'databricks']) {
      let configError: ConfigError | undefined;
      try { config(uri); } catch (e) { configError = e as ConfigError; }
      expect(configError, uri).toBeInstanceOf(ConfigError);
      expect(configError!.issues).toHaveLength(1);
      expect(configError!.issues[0]).toContain('unsupported tracking URI');
      for (const scheme of SUPPORTED_TRACKING_SCHEMES) expect(configError!.issues[0]).toContain(scheme);
      expect(configError!.message).not.toContain('zz-map-secret-1');
      // the same table decides for a configuration that bypassed validation
      const cfg = { ...config('sqlite:///x.db'), trackingUri: uri };
      let storeError: MlflowError | undefined;
      try { createStore(cfg); } catch (e) { storeError = e as MlflowError; }
      expect(storeError, uri).toBeInstanceOf(MlflowError);
      expect(storeError!.code).toBe('INVALID_PARAMETER_VALUE');
      expect(storeError!.message).toContain(`supported schemes: ${SUPPORTED_TRACKING_SCHEMES.join(', ')}`);
      expect(storeError!.message).not.toContain('zz-map-secret-1');
    }
    expect(SUPPORTED_TRACKING_SCHEMES).toEqual(['sqlite', 'postgresql', 'postgresql+psycopg2', 'postgres', 'http', 'https']);
  });

  it('malformed URIs of a supported scheme are refused with what to write', () => {
    expect(parseTrackingUri('sqlite://relative.db').problem).toMatch(/sqlite:\/\/\/relative\.db or sqlite:\/\/\/\/abs/);
    expect(parseTrackingUri('http://exa mple:5000').problem).toMatch(/not a valid URL/);
    expect(() => config('sqlite:mlflow.db')).toThrow(/sqlite URI must look like/);
  });

  it('options over the environment over .env still decide the URI, and so the store', () => {
    const d = tmp('schemes-env');
    const file = join(d, '.env');
    writeFileSync(file, `MLFLOW_TRACKING_URI=${inject('mlflowUri')}\n`);
    const sqlite = `sqlite:///${join(d, 'env.db')}`;
    const kind = (options: Record<string, unknown>, env: Record<string, string>) =>
      createStore(loadTrackerConfig(options, { env, dotenvPath: file })).kind;
    expect(kind({}, {})).toBe('rest'); // .env
    expect(kind({}, { MLFLOW_TRACKING_URI: sqlite })).toBe('sqlite'); // env over .env
    expect(kind({ trackingUri: inject('pgUri') }, { MLFLOW_TRACKING_URI: sqlite })).toBe('postgresql'); // option over env (not opened)
  });
});

describe('artifact location → artifact repository', () => {
  it('names local paths, file://, s3:// and mlflow-artifacts:/ — and refuses the rest naming what is supported', () => {
    const kinds = Object.fromEntries(
      ['/abs/dir', 'rel/dir', 'C:\\runs', 'file:///abs/dir', 's3://bucket/prefix', 'mlflow-artifacts:/1/run/artifacts', 'mlflow-artifacts://host:5000/x']
        .map((u) => [u, parseArtifactLocation(u).kind]),
    );
    expect(kinds).toEqual({
      '/abs/dir': 'local', 'rel/dir': 'local', 'C:\\runs': 'local', 'file:///abs/dir': 'local',
      's3://bucket/prefix': 's3', 'mlflow-artifacts:/1/run/artifacts': 'mlflow-artifacts', 'mlflow-artifacts://host:5000/x': 'mlflow-artifacts',
    });
    const cfg = config('sqlite:///x.db');
    for (const uri of ['gs://bucket/x', 'wasbs://c@a.blob.core.windows.net/x', 'hdfs://nn/x']) {
      expect(parseArtifactLocation(uri).kind).toBeNull();
      expect(() => artifactRepositoryFor(uri, cfg)).toThrow(/Unsupported artifact URI .*supported: local paths, file:\/\/, s3:\/\/bucket\/prefix, mlflow-artifacts:\//);
    }
  });

  it('each kind uploads where its location says (a directory, the S3 server, the tracking server\'s proxy)', async () => {
    const d = tmp('artmap');
    const file = join(d, 'weights.bin');
    writeFileSync(file, 'heimdall');
    // local
    const local = join(d, 'local-root');
    const [up] = await artifactRepositoryFor(`file://${local}`, config('sqlite:///x.db')).logArtifact(file, 'model');
    expect(readFileSync(join(local, 'model', 'weights.bin'), 'utf8')).toBe('heimdall');
    expect(up!.path).toBe('model/weights.bin');
    // s3
    const s3 = inject('s3');
    const bucket = `artmap-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
    const client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    const s3Cfg = config('sqlite:///x.db', { s3EndpointUrl: s3.endpoint, awsAccessKeyId: s3.accessKeyId, awsSecretAccessKey: s3.secretAccessKey });
    const [s3Up] = await artifactRepositoryFor(`s3://${bucket}/runs/1`, s3Cfg).logArtifact(file, 'model');
    expect(s3Up!.uri).toBe(`s3://${bucket}/runs/1/model/weights.bin`);
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'runs/1/model/weights.bin' }));
    expect(head.ContentLength).toBe(8);
    client.destroy();
    // the tracking server's artifact proxy: needs an http(s) tracking URI
    const proxyRoot = `mlflow-artifacts:/artmap-${process.pid}`;
    const [proxyUp] = await artifactRepositoryFor(proxyRoot, config(inject('mlflowUri'))).logArtifact(file, 'model');
    expect(proxyUp!.uri).toBe(`${proxyRoot}/model/weights.bin`);
    const res = await fetch(`${inject('mlflowUri')}/api/2.0/mlflow-artifacts/artifacts/artmap-${process.pid}/model/weights.bin`);
    expect(await res.text()).toBe('heimdall');
    await expect(artifactRepositoryFor(proxyRoot, config('sqlite:///x.db')).logArtifact(file)).rejects.toThrow(/needs an http\(s\) tracking URI/);
  });
});
