// The developer tools under native/*/tools, built once into build-tools/ (incremental; .ci/setup builds them
// up front) and run as child processes. Test files may run in parallel: one lock folder serialises builds.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
export const BUILD_DIR = process.env.HEIMDALL_TOOLS_BUILD_DIR ?? join(ROOT, 'build-tools');
export const PYTHON = process.env.HEIMDALL_PYTHON ?? join(ROOT, '.venv/bin/python');

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a child process without blocking the event loop (vitest's worker must stay responsive). */
export function runProcess(cmd: string, args: string[], ompThreads = 2): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: String(ompThreads) } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Runs a command whose last stdout line is JSON; throws with its output when it fails. */
export async function runJsonProcess<T = any>(cmd: string, args: string[], ompThreads = 2): Promise<T> {
  const r = await runProcess(cmd, args, ompThreads);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stderr.slice(-4000)}\n${r.stdout.slice(-4000)}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Builds (or brings up to date) build-tools/<target> and returns its path. */
export async function buildTool(target: string): Promise<string> {
  const lock = `${BUILD_DIR}.lock`; // build-tools.lock/, ignored
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
    await mustRun('cmake', ['--build', BUILD_DIR, '--target', target, '-j', '2']);
  } finally {
    rmdirSync(lock);
  }
  return join(BUILD_DIR, target);
}

async function mustRun(cmd: string, args: string[]): Promise<void> {
  const r = await runProcess(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stderr.slice(-4000)}\n${r.stdout.slice(-4000)}`);
}
