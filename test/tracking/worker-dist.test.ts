// The worker thread runs from source under vitest (through tsx, see tracker.ts) — every other test — and from
// the compiled JavaScript that users get (dist/): this test compiles lib/tracking with tsc and uses it.
import { execFile } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupTmp, tmp } from './helpers/scenario.js';
import { ROOT } from './helpers/services.js';

afterAll(cleanupTmp);

const run = promisify(execFile);

describe('compiled tracker (dist)', () => {
  it('spawns its worker from worker.js and logs through it', async () => {
    // Inside the repository so that node_modules resolves; .cache/ is git-ignored.
    const out = join(ROOT, '.cache', `dist-test-${process.pid}`);
    rmSync(out, { recursive: true, force: true });
    try {
      await run(process.execPath, [
        join(ROOT, 'node_modules/typescript/bin/tsc'), '--outDir', out, '--rootDir', ROOT, '--module', 'NodeNext', '--moduleResolution', 'NodeNext',
        '--target', 'ES2022', '--strict', '--skipLibCheck', '--esModuleInterop', '--resolveJsonModule', '--types', 'node', join(ROOT, 'lib/tracking/index.ts'),
      ], { cwd: ROOT, timeout: 120_000 });
      const entry = join(out, 'lib/tracking/index.js');
      expect(existsSync(join(out, 'lib/tracking/worker.js'))).toBe(true);
      const d = tmp('dist');
      const script = `
        import { MLflowTracker } from ${JSON.stringify(entry)};
        const t = new MLflowTracker({ trackingUri: 'sqlite:///${join(d, 'm.db')}', dotenvPath: false, env: {}, spoolDir: '${join(d, 'spool')}', artifactUri: '${join(d, 'art')}' });
        await t.startRun({ runName: 'from-dist' });
        for (let s = 0; s < 100; s++) t.logMetric('x', s, s);
        const info = await t.getRunInfo();
        const r = await t.close();
        console.log(JSON.stringify({ complete: r.complete, x: info.metrics.x, name: info.runName }));`;
      // plain node: no tsx, no TypeScript anywhere
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: d, timeout: 60_000 });
      expect(JSON.parse(stdout.trim())).toEqual({ complete: true, x: 99, name: 'from-dist' });
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

describe('defaults', () => {
  it('with MLFLOW_TRACKING_URI unset: ./mlflow.db in the working directory, artifacts in ./mlruns/<exp>/<run>/artifacts', async () => {
    const d = tmp('defaults');
    const script = join(d, 'train.mts');
    writeFileSync(join(d, 'model.txt'), 'weights');
    writeFileSync(script, `
      import { MLflowTracker } from ${JSON.stringify(join(ROOT, 'lib/tracking/index.ts'))};
      const t = new MLflowTracker();
      const id = await t.startRun({ runName: 'defaults' });
      t.logArtifact('model.txt', 'models');
      const r = await t.close();
      console.log(JSON.stringify({ id, exp: t.experimentId, complete: r.complete }));`);
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('MLFLOW_')) delete env[k];
    const loader = join(ROOT, 'node_modules/tsx/dist/loader.mjs');
    const { stdout } = await run(process.execPath, ['--import', `file://${loader}`, script], { cwd: d, env, timeout: 60_000 });
    const r = JSON.parse(stdout.trim().split('\n').pop()!);
    expect(r.complete).toBe(true);
    expect(existsSync(join(d, 'mlflow.db'))).toBe(true);
    expect(existsSync(join(d, 'mlruns', r.exp, r.id, 'artifacts', 'models', 'model.txt'))).toBe(true);
  });
});
