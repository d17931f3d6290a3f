// Runs the pinned Python MLflow client (test/tracking/helpers/mlflow_client.py) and returns its JSON.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ROOT, VENV } from './services.js';

export async function mlflowPython<T = any>(req: Record<string, unknown>, env: Record<string, string> = {}, python = join(VENV, 'python')): Promise<T> {
  const script = join(ROOT, 'test', 'tracking', 'helpers', 'mlflow_client.py');
  return new Promise<T>((resolve, reject) => {
    const p = spawn(python, [script], {
      env: { ...process.env, MLFLOW_TRACKING_URI: '', PYTHONWARNINGS: 'ignore', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('exit', (code) => {
      const i = out.lastIndexOf('@@JSON@@');
      if (code !== 0 || i < 0) reject(new Error(`python mlflow client failed (exit ${code}):\n${err.slice(-4000)}\n${out.slice(-1000)}`));
      else resolve(JSON.parse(out.slice(i + 8)) as T);
    });
    p.stdin.end(JSON.stringify(req));
  });
}

/** The MLflow 2.9 client installed by .ci/setup.d/30-tracking.sh (oldest supported schema). */
export function mlflow29Python(): string {
  const cache = process.env.HEIMDALL_CACHE ?? join(homedir(), '.cache', 'heimdall-torch');
  const p = process.env.HEIMDALL_MLFLOW29_PYTHON ?? join(cache, 'venv-mlflow-2.9', 'bin', 'python');
  if (!existsSync(p)) throw new Error(`MLflow 2.9 venv not found at ${p}: run .ci/setup (30-tracking.sh installs it)`);
  return p;
}

/** Runs test/tracking/helpers/run_inputs.py (dataset inputs and system metrics of runs, read by Python MLflow). */
export function runInputsPython<T>(req: Record<string, unknown>, python = join(VENV, 'python')): Promise<T> {
  return new Promise((resolve, reject) => {
    const p = spawn(python, [join(ROOT, 'test', 'tracking', 'helpers', 'run_inputs.py')], { env: { ...process.env, MLFLOW_TRACKING_URI: '' } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => {
      const i = out.lastIndexOf('@@JSON@@');
      if (code !== 0 || i < 0) reject(new Error(`run_inputs.py failed (${code}): ${err.slice(-3000)}`));
      else resolve(JSON.parse(out.slice(i + 8)) as T);
    });
    p.stdin.end(JSON.stringify(req));
  });
}
