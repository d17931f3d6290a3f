// The Trainer with `devices: 2` (launcher mode: the script starts its second rank itself), Gloo on loopback,
// read back with Python MLflow: one run, rank 0's checkpoints, identical weights; a killed rank fails the run
// naming it and leaves no process behind.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { python, repoRoot } from '../helpers/python.js';
import { freePort } from '../../lib/trainer/distributed.js';
import { tempDir } from '../helpers/tmp.js';

const SCRIPT = fileURLToPath(new URL('./fixtures/trainer_ddp.ts', import.meta.url));

const READ_RUNS = `
import sys, json, mlflow
c = mlflow.MlflowClient(sys.argv[1])
exp = c.get_experiment_by_name('ddp')
runs = c.search_runs([exp.experiment_id])
print(json.dumps([{'id': r.info.run_id, 'status': r.info.status, 'params': r.data.params, 'tags': r.data.tags,
                   'metrics': r.data.metrics} for r in runs]))
`;

interface Outcome {
  code: number | null;
  out: string;
  err: string;
  results: Record<string, any>[];
  errors: Record<string, any>[];
}

/** Runs the fixture with node (launcher mode), or under `torchrun --no-python` when `torchrunArgs` are given. */
async function runScript(root: string, mode: string, torchrunArgs?: string[], extraEnv: Record<string, string> = {}): Promise<Outcome> {
  const uri = `sqlite:///${join(root, 'mlflow.db')}`;
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: '1' };
  for (const k of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'NODE_RANK']) delete env[k];
  Object.assign(env, extraEnv);
  const node = [process.execPath, '--import', 'tsx', SCRIPT, uri, root, mode];
  const [cmd, ...args] = torchrunArgs ? [join(repoRoot, '.venv', 'bin', 'torchrun'), ...torchrunArgs, '--no-python', ...node] : node;
  const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  const parse = (tag: string) => [...out.matchAll(new RegExp(`^${tag} (.*)$`, 'gm'))].map((m) => JSON.parse(m[1]!) as Record<string, any>);
  return { code, out, err, results: parse('RESULT'), errors: parse('ERROR') };
}

/** Node processes still running the fixture script (an orphaned rank would be one). */
function survivors(root: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(root)) pids.push(Number(p));
    } catch { /* gone */ }
  }
  return pids;
}

describe('Trainer({ devices: 2 }) (Gloo, launcher mode)', () => {
  it('trains 2 ranks to identical weights; rank 0 alone logs one FINISHED run (world_size, backend) and writes checkpoints', async () => {
    const root = tempDir('heimdall-ddp-trainer-');
    const r = await runScript(root, 'ok');
    expect(r.code, r.err + r.out).toBe(0);
    expect(r.results.map((x) => x.rank).sort()).toEqual([0, 1]);
    const [a, b] = [r.results.find((x) => x.rank === 0)!, r.results.find((x) => x.rank === 1)!];
    expect(a.reason).toBe('max_epochs');
    // The reference split's training part (44 of 64 samples): 22 per rank, 3 batches of 8 per epoch, 2 epochs.
    expect(a.steps).toBe(6);
    expect(b.steps).toBe(6);
    expect(b.runId).toBe(a.runId);  // shared through the store
    expect(b.valLoss).toEqual(a.valLoss);  // reduced over both shards
    expect(readFileSync(join(root, 'weights-rank0.safetensors')).equals(readFileSync(join(root, 'weights-rank1.safetensors')))).toBe(true);
    expect(existsSync(join(root, 'checkpoints'))).toBe(true);
    const runs = JSON.parse(await python(READ_RUNS, [`sqlite:///${join(root, 'mlflow.db')}`])) as Record<string, any>[];
    expect(runs.length).toBe(1);
    expect(runs[0]!.id).toBe(a.runId);
    expect(runs[0]!.status).toBe('FINISHED');
    expect(runs[0]!.params['distributed/world_size']).toBe('2');
    expect(runs[0]!.params['distributed/backend']).toBe('gloo');
    expect(survivors(root)).toEqual([]);
  }, 300_000);

  it('two nodes (NODE_RANK 0 and 1, one rank each): each logs its machine\'s system metrics into rank 0\'s run, as system/node-0/… and system/node-1/…', async () => {
    const root = tempDir('heimdall-ddp-nodes-');
    const env = { MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(await freePort()), MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL: '0.2' };
    const [n0, n1] = await Promise.all([runScript(root, 'nodes', undefined, { ...env, NODE_RANK: '0' }), runScript(root, 'nodes', undefined, { ...env, NODE_RANK: '1' })]);
    expect(n0.code, n0.err + n0.out).toBe(0);
    expect(n1.code, n1.err + n1.out).toBe(0);
    expect(n1.results[0]!.runId).toBe(n0.results[0]!.runId);
    const runs = JSON.parse(await python(`
import sys, json, mlflow
c = mlflow.MlflowClient(sys.argv[1])
exp = c.get_experiment_by_name('ddp')
runs = c.search_runs([exp.experiment_id])
print(json.dumps([{'id': r.info.run_id, 'status': r.info.status, 'world': r.data.params.get('distributed/world_size'),
  'system': {k: [m.step for m in c.get_metric_history(r.info.run_id, k)] for k in r.data.metrics if k.startswith('system/')}} for r in runs]))
`, [`sqlite:///${join(root, 'mlflow.db')}`])) as Array<{ id: string; status: string; world: string; system: Record<string, number[]> }>;
    expect(runs.map((r) => [r.id, r.status, r.world])).toEqual([[n0.results[0]!.runId, 'FINISHED', '2']]);  // node 1 did not touch the run's status
    const sys = runs[0]!.system;
    for (const k of ['system/node-0/cpu_utilization_percentage', 'system/node-1/cpu_utilization_percentage', 'system/node-1/process_memory_rss_megabytes']) {
      expect(sys[k]?.length, `${k} in ${Object.keys(sys).join(', ')}`).toBeGreaterThanOrEqual(1);
      expect(sys[k]).toEqual(sys[k]!.map((_, i) => i));  // steps 0, 1, 2… per node
    }
    expect(Object.keys(sys).filter((k) => !/^system\/node-[01]\//.test(k))).toEqual([]);  // every row names its machine
    expect(survivors(root)).toEqual([]);
  }, 300_000);

  it('under torchrun --no-python --nproc-per-node 2 (its agent hosts the store): the same one run, identical weights', async () => {
    const root = tempDir('heimdall-ddp-torchrun-');
    const r = await runScript(root, 'ok', ['--nproc-per-node', '2', '--master-port', String(await freePort())]);
    expect(r.code, r.err + r.out).toBe(0);
    expect(r.results.map((x) => x.rank).sort()).toEqual([0, 1]);
    const [a, b] = [r.results.find((x) => x.rank === 0)!, r.results.find((x) => x.rank === 1)!];
    expect(a.steps).toBe(6);
    expect(b.runId).toBe(a.runId);
    expect(readFileSync(join(root, 'weights-rank0.safetensors')).equals(readFileSync(join(root, 'weights-rank1.safetensors')))).toBe(true);
    const runs = JSON.parse(await python(READ_RUNS, [`sqlite:///${join(root, 'mlflow.db')}`])) as Record<string, any>[];
    expect(runs.map((x) => [x.id, x.status, x.params['distributed/world_size']])).toEqual([[a.runId, 'FINISHED', '2']]);
    expect(survivors(root)).toEqual([]);
  }, 300_000);

  it('CLI train --devices 2: rank 0 alone reports, exports and logs; one FINISHED run read back by Python MLflow', async () => {
    const dir = tempDir('heimdall-ddp-cli-');
    const env = { ...process.env, OMP_NUM_THREADS: '1' };
    for (const k of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'NODE_RANK', 'MLFLOW_TRACKING_URI']) delete env[k];
    const tsx = pathToFileURL(join(repoRoot, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;  // cwd is elsewhere
    const child = spawn(process.execPath, ['--import', tsx, join(repoRoot, 'lib', 'bin.ts'), 'train', '--devices', '2', '--backbone', 'atto',
      '--samples', '60', '--epochs', '2', '--batch-size', '8', '--threads', '1', '--run-name', 'ddp-cli', '--output-dir', join(dir, 'out')],
    { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    expect(code, err + out).toBe(0);
    expect(out.match(/centroid baseline/g)?.length).toBe(1);  // rank 1 trains silently
    expect(out).toMatch(/onnxruntime-node .* PASSED/);
    expect(existsSync(join(dir, 'out', 'model.onnx'))).toBe(true);
    const runs = JSON.parse(await python(READ_RUNS.replace("'ddp'", "'heimdall-localization'"), [`sqlite:///${join(dir, 'mlflow.db')}`])) as Record<string, any>[];
    expect(runs.length).toBe(1);
    expect(runs[0]!.status).toBe('FINISHED');
    expect(runs[0]!.params['distributed/world_size']).toBe('2');
    expect(runs[0]!.metrics.final_test_loss).toBeTypeOf('number');
    expect(survivors(dir)).toEqual([]);
  }, 300_000);

  it('a stop on rank 0 (Ctrl-C) stops both ranks: one interrupted checkpoint, the run KILLED; 1 process resumes it to FINISHED', async () => {
    const root = tempDir('heimdall-ddp-stop-');
    const r = await runScript(root, 'interrupt');
    expect(r.code, r.err + r.out).toBe(0);
    const [a, b] = [r.results.find((x) => x.rank === 0)!, r.results.find((x) => x.rank === 1)!];
    expect(a.reason).toBe('interrupted');
    expect(b.reason).toBe('interrupted');  // rank 1 was never asked: the ranks agree at the batch boundary
    expect(a.steps).toBe(b.steps);
    expect(existsSync(a.checkpoint)).toBe(true);
    let runs = JSON.parse(await python(READ_RUNS, [`sqlite:///${join(root, 'mlflow.db')}`])) as Record<string, any>[];
    expect(runs.map((x) => x.status)).toEqual(['KILLED']);
    const resumed = await runScript(root, `resume=${a.checkpoint}`);
    expect(resumed.code, resumed.err + resumed.out).toBe(0);
    expect(resumed.results).toHaveLength(1);
    expect(resumed.results[0]).toMatchObject({ rank: 0, reason: 'max_epochs', runId: a.runId });
    // 2 epochs of 44 samples: 3 batches of 8 per rank on 2 ranks (6 steps), so the resumed process finishes the
    // interrupted epoch's remaining samples in batches of 8, then a whole epoch of 6 batches.
    expect(resumed.results[0]!.steps).toBe(a.steps + Math.ceil((44 - 16 * a.steps) / 8) + 6);
    runs = JSON.parse(await python(READ_RUNS, [`sqlite:///${join(root, 'mlflow.db')}`])) as Record<string, any>[];
    expect(runs.map((x) => [x.id, x.status])).toEqual([[a.runId, 'FINISHED']]);
    expect(survivors(root)).toEqual([]);
  }, 300_000);

  it('a rank killed mid-epoch: every process exits, the run ends FAILED naming the rank', async () => {
    const root = tempDir('heimdall-ddp-kill-');
    const t0 = Date.now();
    const r = await runScript(root, 'kill-rank-1');
    expect(r.code).toBe(1);
    expect(r.results).toEqual([]);
    const e0 = r.errors.find((x) => x.rank === 0);
    expect(e0, r.err + r.out).toBeDefined();
    expect(e0!.code).toBe('HEIMDALL_DISTRIBUTED');
    expect(e0!.message).toMatch(/rank 1 \(pid \d+\) was killed by SIGKILL/);
    expect(Date.now() - t0).toBeLessThan(120_000);
    const runs = JSON.parse(await python(READ_RUNS, [`sqlite:///${join(root, 'mlflow.db')}`])) as Record<string, any>[];
    expect(runs.length).toBe(1);
    expect(runs[0]!.status).toBe('FAILED');
    expect(runs[0]!.tags['error.message']).toMatch(/rank 1 \(pid \d+\) was killed by SIGKILL/);
    expect(survivors(root)).toEqual([]);
  }, 300_000);
});
