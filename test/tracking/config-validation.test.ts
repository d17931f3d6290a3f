// Configuration (zod over options, env, .env), secret redaction, MLflow's key/value validation, filters.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadTrackerConfig, redact, registerSecret } from '../../lib/config.js';
import { MlflowError, MLflowTracker, parseFilter, parseOrderBy } from '../../lib/tracking/index.js';
import { timerMs } from '../../lib/tracking/rest/http.js';
import { flattenParams, validateArtifactPath, validateKey, validateParam, validateTag } from '../../lib/tracking/validation.js';
import { cleanupTmp, tmp, trackerOptions } from './helpers/scenario.js';

afterAll(cleanupTmp);

describe('config', () => {
  it('has the reference defaults', () => {
    const c = loadTrackerConfig({}, { env: {}, dotenvPath: false });
    expect(c.trackingUri).toBe('sqlite:///mlflow.db');
    expect(c.experimentName).toBe('heimdall-localization');
    expect(c.httpRequestTimeoutS).toBe(120);
    expect(c.artifactUri).toBeUndefined();
  });

  it('reads options over the environment over .env, with the reference names and aliases', () => {
    const d = tmp('dotenv');
    const file = join(d, '.env');
    writeFileSync(file, 'MLFLOW_EXPERIMENT_NAME=from-dotenv\nMLFLOW_TRACKING_URI=http://dotenv:5000\nMLFLOW_S3_ACCESS_KEY_ID=ref-key-id\nMLFLOW_S3_IGNORE_TLS=true\n');
    const c = loadTrackerConfig({ artifactUri: 's3://opt-bucket/p' }, { env: { MLFLOW_TRACKING_URI: 'postgresql+psycopg2://u@h:5432/db', MLFLOW_HTTP_REQUEST_TIMEOUT: '7' }, dotenvPath: file });
    expect(c.trackingUri).toBe('postgresql+psycopg2://u@h:5432/db');
    expect(c.experimentName).toBe('from-dotenv');
    expect(c.artifactUri).toBe('s3://opt-bucket/p');
    expect(c.awsAccessKeyId).toBe('ref-key-id');
    expect(c.s3IgnoreTls).toBe(true);
    expect(c.httpRequestTimeoutS).toBe(7);
  });

  it('reports every invalid field in one error, naming where each came from', () => {
    let err: ConfigError | undefined;
    try {
      loadTrackerConfig({ httpRequestMaxRetries: -1, bogus: 1 } as never, {
        env: { MLFLOW_TRACKING_URI: 'ftp://nowhere', MLFLOW_HTTP_REQUEST_TIMEOUT: 'soon', MLFLOW_TRACKING_INSECURE_TLS: 'maybe', MLFLOW_S3_ENDPOINT_URL: 'not a url', MLFLOW_ARTIFACT_URI: 's3://s3://bucket' },
        dotenvPath: false,
      });
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const text = err!.issues.join('\n');
    expect(err!.issues.length).toBe(7);
    for (const s of ['MLFLOW_TRACKING_URI', 'MLFLOW_HTTP_REQUEST_TIMEOUT', 'MLFLOW_TRACKING_INSECURE_TLS', 'MLFLOW_S3_ENDPOINT_URL', 'MLFLOW_ARTIFACT_URI', 'httpRequestMaxRetries', 'bogus']) {
      expect(text).toContain(s);
    }
    expect(text).toMatch(/doubled s3:\/\//);
    expect(err!.message.split('\n')[0]).toBe('Invalid configuration:');
  });

  it('a missing explicit .env file is an error', () => {
    expect(() => loadTrackerConfig({}, { env: {}, dotenvPath: '/nonexistent/.env' })).toThrow(/does not exist/);
  });

  it('redacts passwords in URIs, tokens and configured secrets everywhere', () => {
    const c = loadTrackerConfig({}, {
      env: { MLFLOW_TRACKING_URI: 'http://bob:pa55-w0rd-xyz@mlflow:5000', MLFLOW_TRACKING_TOKEN: 'tok-abcdef-123456', AWS_SECRET_ACCESS_KEY: 'aws-secret-zzzz-9999' },
      dotenvPath: false,
    });
    expect(c.trackingToken).toBe('tok-abcdef-123456');
    const msg = `connect to ${c.trackingUri} with Bearer ${c.trackingToken} and key aws-secret-zzzz-9999 (pa55-w0rd-xyz)`;
    const r = redact(msg);
    for (const s of ['pa55-w0rd-xyz', 'tok-abcdef-123456', 'aws-secret-zzzz-9999']) expect(r).not.toContain(s);
    expect(r).toContain('http://bob:***@mlflow:5000');
    expect(redact({ db_password: 'x1', max_tokens: 5, nested: { apiKey: 'k', uri: 'postgresql://a:b12345@h/d' } }))
      .toEqual({ db_password: '***', max_tokens: 5, nested: { apiKey: '***', uri: 'postgresql://a:***@h/d' } });
    const e = redact(new MlflowError('failed for pa55-w0rd-xyz', 'INVALID_PARAMETER_VALUE'));
    expect(e.message).not.toContain('pa55-w0rd-xyz');
    expect((e as MlflowError).code).toBe('INVALID_PARAMETER_VALUE');
  });

  it('an invalid tracker configuration fails in the constructor, redacted', () => {
    registerSecret('zz-top-secret-77');
    expect(() => new MLflowTracker({ trackingUri: 'mysql://root:zz-top-secret-77@db/x', dotenvPath: false, env: {} })).toThrow(ConfigError);
    try {
      new MLflowTracker({ trackingUri: 'mysql://root:zz-top-secret-77@db/x', dotenvPath: false, env: {} });
    } catch (e) {
      expect((e as Error).message).toContain('unsupported tracking URI');
      expect((e as Error).message).not.toContain('zz-top-secret-77');
    }
  });
});

describe('MLflow validation', () => {
  it('accepts MLflow-valid keys and rejects the others with a clear message', () => {
    for (const k of ['train/loss', 'val loss', 'a.b-c_d', 'time:ms', 'précision']) expect(validateKey('metric', k)).toBe(k);
    const bad: [string, RegExp][] = [
      ['', /Missing metric key/], ['bad$char', /may only contain/], ['../up', /resolve to/], ['/abs', /resolve to/],
      ['a//b', /resolve to 'a\/b'/], ['a/./b', /resolve to/], ['trail/', /resolve to/], ['x'.repeat(251), /maximum length of 250/],
    ];
    for (const [k, re] of bad) {
      let err: unknown;
      try { validateKey('metric', k); } catch (e) { err = e; }
      expect(err, k).toBeInstanceOf(MlflowError);
      expect((err as MlflowError).code).toBe('INVALID_PARAMETER_VALUE');
      expect((err as Error).message).toMatch(re);
    }
  });

  it("truncates long param and tag values like MLflow (6000 / 8000) with a warning", () => {
    const warnings: string[] = [];
    expect(validateParam('p', 'x'.repeat(7000), (w) => warnings.push(w)).value.length).toBe(6000);
    expect(validateTag('t', 'y'.repeat(9000), (w) => warnings.push(w)).value.length).toBe(8000);
    expect(warnings.length).toBe(2);
    expect(warnings[0]).toMatch(/truncated to 6000/);
  });

  it('flattens nested params with / and serialises arrays and objects as JSON', () => {
    expect(flattenParams({ a: 1, b: { c: 'x', d: { e: [1, 2] } }, f: null, g: {}, h: true })).toEqual({ a: '1', 'b/c': 'x', 'b/d/e': '[1,2]', f: 'null', g: '{}', h: 'true' });
  });

  it('rejects artifact paths that escape the run', () => {
    expect(validateArtifactPath('models/best')).toBe('models/best');
    expect(validateArtifactPath(undefined)).toBe('');
    for (const p of ['../x', 'a/../../b', '/etc', 'C:\\x', 'a\\b']) expect(() => validateArtifactPath(p), p).toThrow(/Invalid artifact path/);
  });

  it('parses the common MLflow filter and order-by syntax', () => {
    expect(parseFilter("metrics.`val/loss` < 0.5 AND params.lr = '0.001' AND tags.\"mlflow.runName\" LIKE 'exp%' AND attributes.status != 'FAILED' AND run_name IN ('a', 'b')")).toEqual([
      { type: 'metric', key: 'val/loss', comparator: '<', value: 0.5 },
      { type: 'param', key: 'lr', comparator: '=', value: '0.001' },
      { type: 'tag', key: 'mlflow.runName', comparator: 'LIKE', value: 'exp%' },
      { type: 'attribute', key: 'status', comparator: '!=', value: 'FAILED' },
      { type: 'attribute', key: 'run_name', comparator: 'IN', value: ['a', 'b'] },
    ]);
    expect(parseFilter('metrics.acc >= -1e-3 and tags.x = "y"')).toEqual([
      { type: 'metric', key: 'acc', comparator: '>=', value: -0.001 },
      { type: 'tag', key: 'x', comparator: '=', value: 'y' },
    ]);
    expect(parseOrderBy(['metrics.`val/loss` DESC', 'attributes.start_time', 'params.lr ASC'])).toEqual([
      { type: 'metric', key: 'val/loss', ascending: false },
      { type: 'attribute', key: 'start_time', ascending: true },
      { type: 'param', key: 'lr', ascending: true },
    ]);
    expect(() => parseFilter("params.a = 'x' OR params.b = 'y'")).toThrow(/joined by AND/);
    expect(() => parseFilter('metrics.val/loss < 1')).toThrow(/Invalid filter/);
    expect(() => parseFilter("metrics.loss < 'x'")).toThrow(/compared with a number/);
    expect(() => parseFilter('attributes.nope = 1')).toThrow(/Invalid attribute key 'nope'/);
  });

  it('logging validates synchronously and never half-enqueues', async () => {
    const d = tmp('val');
    const t = new MLflowTracker(trackerOptions(`sqlite:///${join(d, 'm.db')}`, { artifactUri: join(d, 'art') }));
    expect(() => t.logMetric('x', 1)).toThrow(/No active run/);
    await t.startRun();
    t.logParams({ lr: 0.1, epochs: 3 });
    t.logParams({ lr: 0.1 }); // same value again: fine
    expect(() => t.logParams({ batch: 8, lr: 0.2 })).toThrow(/Changing param values is not allowed: 'lr'/);
    expect(() => t.logMetrics({ ok: 1, 'bad key!': 2 }, 0)).toThrow(/may only contain/);
    expect(() => t.logMetric('m', 'x' as unknown as number)).toThrow(/must be a number/);
    expect(() => t.logMetric('m', 1, 1.5)).toThrow(/step must be an integer/);
    expect(() => t.logArtifact(join(d, 'missing.bin'))).toThrow(/does not exist/);
    writeFileSync(join(d, 'f.txt'), 'x');
    expect(() => t.logArtifact(join(d, 'f.txt'), '../outside')).toThrow(/escapes/);
    expect(() => t.logArtifacts(join(d, 'f.txt'))).toThrow(/not a directory/);
    await t.flush();
    const info = await t.getRunInfo();
    expect(info.params).toEqual({ lr: '0.1', epochs: '3' }); // 'batch' of the refused call did not land
    expect(info.metrics).toEqual({}); // nor did 'ok' of the refused logMetrics call
    await t.close();
  });
});

// Issue 14, finding 10: Node runs a timer longer than 2³¹−1 ms after ~1 ms (a huge configured timeout must
// mean "practically never"); the delivery side is tested against PostgreSQL in sql-store.test.ts.
describe('timeouts above what a Node timer holds', () => {
  it('saturate at 2³¹−1 ms', () => {
    expect(timerMs(99_999_999_000)).toBe(2 ** 31 - 1);
    expect(timerMs(Number.POSITIVE_INFINITY)).toBe(2 ** 31 - 1);
    expect(timerMs(-5)).toBe(0);
    expect(timerMs(1500)).toBe(1500);
    expect(loadTrackerConfig({}, { env: { HEIMDALL_MLFLOW_CLOSE_TIMEOUT: '99999999' }, dotenvPath: false }).closeTimeoutS).toBe(99_999_999);
  });
});
