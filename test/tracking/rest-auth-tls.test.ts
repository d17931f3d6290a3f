// MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN and MLFLOW_TRACKING_INSECURE_TLS against the real mlflow server,
// behind a TLS-terminating reverse proxy (self-signed certificate) that demands credentials — the way an
// MLflow server is usually deployed.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MLflowTracker } from '../../lib/tracking/index.js';
import { cleanupTmp, tmp, trackerOptions } from './helpers/scenario.js';

afterAll(cleanupTmp);

let proxy: https.Server;
let url = '';
const seen: string[] = [];
/** HTTP statuses to answer the next log-batch requests with (fault injection). */
const failures: number[] = [];
const PASSWORD = 'pr0xy-Pa55word-42';
const TOKEN = 'tkn-0123456789-abcdef';

beforeAll(async () => {
  const d = tmp('tls');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(d, 'key.pem'), '-out', join(d, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  const upstream = new URL(inject('mlflowUri'));
  proxy = https.createServer({ key: readFileSync(join(d, 'key.pem')), cert: readFileSync(join(d, 'cert.pem')) }, (req, res) => {
    if (req.url?.includes('runs/log-batch') && failures.length) {
      const status = failures.shift()!;
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error_code: status === 429 ? 'REQUEST_LIMIT_EXCEEDED' : 'TEMPORARILY_UNAVAILABLE', message: 'injected' }));
      return;
    }
    const auth = req.headers.authorization ?? '';
    seen.push(auth.split(' ')[0] ?? '');
    const ok = auth === `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}` || auth === `Bearer ${TOKEN}`;
    if (!ok) {
      res.writeHead(401, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error_code: 'UNAUTHENTICATED', message: 'credentials required' }));
      return;
    }
    const fwd = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: { ...req.headers, host: upstream.host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    fwd.on('error', () => { res.writeHead(502); res.end(); });
    req.pipe(fwd);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  url = `https://127.0.0.1:${(proxy.address() as { port: number }).port}`;
});
afterAll(() => new Promise<void>((r) => proxy.close(() => r())));

describe('REST store: authentication and TLS', () => {
  it('basic auth from MLFLOW_TRACKING_USERNAME/PASSWORD with MLFLOW_TRACKING_INSECURE_TLS', async () => {
    const t = new MLflowTracker({
      ...trackerOptions(url), experimentName: `tls-${process.pid}`,
      env: { MLFLOW_TRACKING_USERNAME: 'alice', MLFLOW_TRACKING_PASSWORD: PASSWORD, MLFLOW_TRACKING_INSECURE_TLS: 'true', MLFLOW_HTTP_REQUEST_MAX_RETRIES: '0' },
    });
    const runId = await t.startRun({ tags: { endpoint: url } });
    t.logMetrics({ loss: 0.5 }, 1);
    const info = await t.getRunInfo();
    expect(info.metrics.loss).toBe(0.5);
    expect(JSON.stringify(info)).not.toContain(PASSWORD);
    await t.close();
    expect(runId).toMatch(/^[0-9a-f]{32}$/);
    expect(seen).toContain('Basic');
  });

  it('bearer token from MLFLOW_TRACKING_TOKEN', async () => {
    const t = new MLflowTracker({ ...trackerOptions(url), env: { MLFLOW_TRACKING_TOKEN: TOKEN, MLFLOW_TRACKING_INSECURE_TLS: '1' } });
    expect((await t.searchExperiments(undefined, 5)).length).toBeGreaterThan(0);
    await t.close();
    expect(seen).toContain('Bearer');
  });

  it('refuses a self-signed certificate unless told otherwise, and reports bad credentials clearly without leaking them', async () => {
    const strict = new MLflowTracker({ ...trackerOptions(url), env: { MLFLOW_TRACKING_TOKEN: TOKEN, MLFLOW_HTTP_REQUEST_MAX_RETRIES: '0' } });
    await expect(strict.start()).rejects.toThrow(/self[- ]signed certificate/);
    await strict.close();
    const wrong = new MLflowTracker({ ...trackerOptions(url), env: { MLFLOW_TRACKING_USERNAME: 'alice', MLFLOW_TRACKING_PASSWORD: 'wrong-Pa55word-77', MLFLOW_TRACKING_INSECURE_TLS: 'true' } });
    let msg = '';
    try { await wrong.start(); } catch (e) { msg = (e as Error).message; }
    expect(msg).toMatch(/HTTP 401 UNAUTHENTICATED/);
    expect(msg).not.toContain('wrong-Pa55word-77');
    await wrong.close();
  });

  it('retries 429 and 5xx answers with backoff; batches stay within MLflow limits (params, tags, metrics)', async () => {
    const t = new MLflowTracker({ ...trackerOptions(url), env: { MLFLOW_TRACKING_TOKEN: TOKEN, MLFLOW_TRACKING_INSECURE_TLS: 'true' } });
    const runId = await t.startRun({ runName: 'limits' });
    failures.push(429, 503, 500);
    const params: Record<string, number> = {};
    for (let i = 0; i < 250; i++) params[`p${i}`] = i;
    t.logParams(params);
    const tags: Record<string, string> = {};
    for (let i = 0; i < 150; i++) tags[`t${i}`] = `v${i}`;
    t.setTags(tags);
    for (let s = 0; s < 2500; s++) t.logMetric('loss', 1 / (s + 1), s);
    const f = await t.flush();
    expect(f.complete).toBe(true);
    expect(f.errors).toEqual([]);
    expect(failures).toEqual([]); // all three injected failures were met, and retried
    const info = await t.getRunInfo(runId);
    expect(Object.keys(info.params).length).toBe(250);
    expect(Object.keys(info.tags).filter((k) => /^t\d+$/.test(k)).length).toBe(150);
    expect((await t.getMetricHistory('loss')).length).toBe(2500);
    await t.close();
  });
});
