// Shared by the ONNX tests: builds the export_onnx developer tool (cmake, into build-tools/, incremental) and
// runs the Python references of test/onnx/reference.py with the project's .venv.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
export const BUILD_DIR = process.env.HEIMDALL_TOOLS_BUILD_DIR ?? join(ROOT, 'build-tools');
export const TOOL = join(BUILD_DIR, 'export_onnx');
export const PYTHON = process.env.HEIMDALL_PYTHON ?? join(ROOT, '.venv/bin/python');
export const REFERENCE = join(ROOT, 'test/onnx/reference.py');

// The reference's thresholds (issue 5): max |Δ| ≤ 1e-4, mean |Δ| ≤ 1e-5.
export const MAX_ABS = 1e-4;
export const MEAN_ABS = 1e-5;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Builds (or brings up to date) build-tools/export_onnx. Test files may run in parallel: a lock folder serialises. */
export async function buildTool(): Promise<string> {
  const lock = `${BUILD_DIR}.lock`;  // build-tools.lock/: ignored like build-*/
  const started = Date.now();
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // A lock older than 30 minutes belongs to a dead process.
      try {
        if (Date.now() - statSync(lock).mtimeMs > 30 * 60_000) rmdirSync(lock);
      } catch {}
      if (Date.now() - started > 30 * 60_000) throw new Error(`waited 30 min for ${lock}`);
      await sleep(1000);
    }
  }
  try {
    if (!existsSync(join(BUILD_DIR, 'CMakeCache.txt'))) {
      const generator = spawnSync('ninja', ['--version']).status === 0 ? ['-G', 'Ninja'] : [];
      await mustRun('cmake', ['-S', ROOT, '-B', BUILD_DIR, ...generator, '-DHEIMDALL_BUILD_TOOLS=ON', '-DCMAKE_BUILD_TYPE=Release']);
    }
    await mustRun('cmake', ['--build', BUILD_DIR, '--target', 'export_onnx', '-j', '2']);
  } finally {
    rmdirSync(lock);
  }
  return TOOL;
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a child process without blocking the event loop (vitest's worker must stay responsive). */
export function run(cmd: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: '2' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

async function mustRun(cmd: string, args: string[]): Promise<void> {
  const r = await run(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stderr.slice(-4000)}\n${r.stdout.slice(-4000)}`);
}

export async function runJson<T = any>(cmd: string, args: string[]): Promise<T> {
  const r = await run(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stderr}\n${r.stdout}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as T;
}

export function tempDir(prefix = 'heimdall-onnx-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface Case {
  variant: string;
  head: 'localization' | 'classification' | 'regression';
  outputs?: number;
  inChans?: number;
  height: number;
  width: number;
  batches: number[];
  seed?: number;
}

/** reference.py make: random non-trivial weights (timm names) and input batches, in `dir`. */
export async function makeReference(dir: string, c: Case) {
  const weights = join(dir, 'weights.safetensors');
  const inputs = join(dir, 'inputs.safetensors');
  await runJson(PYTHON, [REFERENCE, 'make', ...caseArgs(c), '--height', String(c.height), '--width', String(c.width),
    '--batches', c.batches.join(','), '--seed', String(c.seed ?? 0), '--weights', weights, '--inputs', inputs]);
  return { weights, inputs };
}

export function caseArgs(c: Case): string[] {
  return ['--variant', c.variant, '--head', c.head, '--outputs', String(c.outputs ?? 2), '--in-chans', String(c.inChans ?? 3)];
}

export interface Diff {
  max: number;
  mean: number;
}
export interface CheckReport {
  checker: string;
  ir_version: number;
  opsets: Record<string, number>;
  metadata: Record<string, string>;
  inputs: { name: string; shape: (string | number)[] }[];
  outputs: { name: string; shape: (string | number)[] }[];
  op_types: string[];
  external_initializers: number;
  batches: {
    input: string;
    shape: number[];
    outputs: Record<string, { shape: number[]; ort_vs_torch: Diff; ort_vs_libtorch?: Diff; libtorch_vs_torch?: Diff; ref_absmax: number }>;
  }[];
}

/** reference.py check: onnx.checker (full) + ONNX Runtime vs timm (and vs libtorch's outputs when given). */
export function checkReference(c: Case, files: { onnx: string; weights: string; inputs: string; libtorch?: string }): Promise<CheckReport> {
  const args = [REFERENCE, 'check', ...caseArgs(c), '--onnx', files.onnx, '--weights', files.weights, '--inputs', files.inputs];
  if (files.libtorch) args.push('--libtorch', files.libtorch);
  return runJson<CheckReport>(PYTHON, args);
}
