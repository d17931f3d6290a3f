// Write-ahead (issue 14): a training process killed with SIGKILL (as the OOM killer does) while the tracking
// backend hangs loses none of its params, tags, run end and artifact uploads, and no metric point older than
// writeAheadMs: the next tracker on the same spool delivers them. The backend is the suite's MLflow server
// behind a small HTTP proxy in this test that stops answering on demand; MLflow's Python client reads back.
import { spawn } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { MLflowTracker } from '../../lib/tracking/index.js';
import { sleep } from './helpers/pg.js';
import { mlflowPython } from './helpers/python.js';
import { cleanupTmp, tmp, trackerOptions } from './helpers/scenario.js';
import { ROOT } from './helpers/services.js';

afterAll(cleanupTmp);

/** A forwarding HTTP proxy to `target` that, while `hang` is set, takes requests and never answers them. */
async function hangingProxy(target: string) {
  const t = new URL(target);
  const held: http.ServerResponse[] = [];
  const state = { hang: false, uri: '', held };
  const server = http.createServer((req, res) => {
    if (state.hang) { held.push(res); return; }
    const up = http.request({ host: t.hostname, port: t.port, path: req.url, method: req.method, headers: { ...req.headers, host: t.host } }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.uri = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    state,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

describe('write-ahead: SIGKILL while the backend hangs', () => {
  it.each([
    ['end', 'FINISHED'],
    ['metrics-last', 'RUNNING'],
  ])('mode %s: a new tracker on the same spool delivers what was written ahead (run %s)', async (mode, status) => {
    const proxy = await hangingProxy(inject('mlflowUri'));
    try {
      const d = tmp(`wal-${mode}`);
      const spoolDir = join(d, 'spool');
      const experiment = `write-ahead-${mode}-${Date.now()}`;
      const file = join(d, 'ckpt.bin');
      writeFileSync(file, Buffer.alloc(3000, 7));
      const writeAheadMs = 300;
      const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/tracking/fixtures/write_ahead_child.ts'),
        proxy.state.uri, spoolDir, experiment, file, mode, String(writeAheadMs)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => r(signal)));
      const until = async (re: RegExp) => {
        for (let i = 0; i < 600 && !re.test(out); i++) await sleep(50);
        expect(out, err.slice(-2000)).toMatch(re);
      };
      await until(/RUN [0-9a-f]{32}/);
      const runId = /RUN ([0-9a-f]{32})/.exec(out)![1]!;
      proxy.state.hang = true;  // from now on the backend takes requests and never answers
      child.stdin.write('go\n');
      await until(/LOGGED/);
      await sleep(writeAheadMs + 700);
      expect(proxy.state.held.length, 'the child was delivering into the hung backend').toBeGreaterThan(0);
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      // What the killed process left: its spool folder with the write-ahead journal
      const key = readdirSync(spoolDir)[0]!;
      expect(readdirSync(join(spoolDir, key, readdirSync(join(spoolDir, key))[0]!)).some((f) => /^wal-\d+\.jsonl$/.test(f))).toBe(true);

      for (const r of proxy.state.held.splice(0)) r.destroy();
      proxy.state.hang = false;
      const t = new MLflowTracker(trackerOptions(proxy.state.uri, { spoolDir, experimentName: experiment }));
      const report = await t.flush({ timeoutMs: 60_000 });
      expect(report.complete, JSON.stringify(report)).toBe(true);
      expect(t.warnings.join('\n')).toMatch(/delivering operations left in the spool/);
      await t.close();

      const py = await mlflowPython({ op: 'read', tracking_uri: inject('mlflowUri'), experiment, history_keys: ['loss'] });
      const run = py.runs.find((x: { run_id: string }) => x.run_id === runId);
      expect(run.status).toBe(status);
      expect(run.params).toEqual({ lr: '0.01', batch_size: '32' });
      expect(run.tags.stage).toBe('write-ahead');
      expect(run.history.loss.map((h: number[]) => h[0])).toEqual(Array.from({ length: 200 }, (_, i) => i));
      expect(run.artifacts).toEqual([['checkpoints/ckpt.bin', 3000]]);
      // and nothing is left for a third tracker
      expect(readdirSync(join(spoolDir, key))).toEqual([]);
    } finally {
      await proxy.close();
    }
  }, 120_000);
});
