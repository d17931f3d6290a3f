// Running the CLI from source (tsx) for the inference tests, and small file helpers.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot } from '../helpers/python.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `heimdall-torch <args>` in `cwd` with `env` on top of a clean tracking environment. */
export function cli(args: string[], cwd: string, env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const tsx = pathToFileURL(join(repoRoot, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
    const p = spawn(process.execPath, ['--import', tsx, join(repoRoot, 'lib', 'bin.ts'), ...args], {
      cwd,
      env: {
        ...process.env, MLFLOW_TRACKING_URI: '', MLFLOW_ARTIFACT_URI: '', MLFLOW_S3_ENDPOINT_URL: '', AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '',
        ...env, CI: 'true',
      },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Trains a tiny convnext_atto run (1 epoch, 60 synthetic samples, no ONNX export); returns its run id. */
export async function trainTinyRun(cwd: string, env: Record<string, string>, experiment: string): Promise<string> {
  const r = await cli(['train', '--backbone', 'convnext_atto', '--epochs', '1', '--samples', '60', '--batch-size', '8', '--no-export-onnx',
    '--threads', '2', '--experiment-name', experiment, '--run-name', 'tiny', '--output-dir', join(cwd, 'outputs')], cwd, env);
  if (r.code !== 0) throw new Error(`train failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  const m = /MLflow run ([0-9a-f]{32})/.exec(r.stdout);
  if (!m) throw new Error(`no run id in:\n${r.stdout}`);
  return m[1]!;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = d;
  }
  return m;
}
