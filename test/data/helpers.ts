// Shared by the Heimdall data tests: builds the heimdall_data_tool developer tool (cmake, into build-tools/,
// the same directory and flags as the other tool-based tests; a lock folder serialises concurrent builds)
// and runs it and the numpy references of test/data/reference.py.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
export const BUILD_DIR = process.env.HEIMDALL_TOOLS_BUILD_DIR ?? join(ROOT, 'build-tools');
export const TOOL = join(BUILD_DIR, 'heimdall_data_tool');
export const PYTHON = process.env.HEIMDALL_PYTHON ?? join(ROOT, '.venv/bin/python');
export const REFERENCE = join(ROOT, 'test/data/reference.py');
/** Building libtorch code from scratch takes minutes on 2 cores. */
export const BUILD_TIMEOUT_MS = 30 * 60_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function buildTool(): Promise<string> {
  const lock = join(ROOT, '.build-tools.lock');
  const started = Date.now();
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      try {
        if (Date.now() - statSync(lock).mtimeMs > 30 * 60_000) rmdirSync(lock); // left by a dead process
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
    await mustRun('cmake', ['--build', BUILD_DIR, '--target', 'heimdall_data_tool', '-j', '2']);
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

/** Runs a child process without blocking the event loop. */
export function run(cmd: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: '1' } });
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

export const tool = <T = any>(...args: string[]) => runJson<T>(TOOL, args);
export const reference = <T = any>(...args: string[]) => runJson<T>(PYTHON, [REFERENCE, ...args]);

/** Runs the tool expecting failure; returns stderr. */
export async function toolError(...args: string[]): Promise<{ status: number | null; stderr: string }> {
  const r = await run(TOOL, args);
  return { status: r.status, stderr: r.stderr };
}

/** Loads a .npy file through numpy and returns it as nested JSON (small arrays only). */
export async function loadNpy(path: string): Promise<any> {
  const r = await run(PYTHON, ['-c', `import json,numpy as np; print(json.dumps(np.load(${JSON.stringify(path)}).tolist()))`]);
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

/** Runs a Python snippet (numpy imported as np) and parses the JSON it prints last. */
export async function py<T = any>(code: string): Promise<T> {
  return runJson<T>(PYTHON, ['-c', `import json, numpy as np\n${code}`]);
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `heimdall-data-${prefix}-`));
}
