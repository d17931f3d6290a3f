// Runs reference code in the project's .venv (torch, timm, onnx, onnxruntime, mlflow): the independent
// implementations our results are compared with.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const repoRoot = join(import.meta.dirname, '..', '..');
export const venvPython = join(repoRoot, '.venv', 'bin', 'python');

/** Runs a Python script (source text) with arguments; returns stdout. Throws with stderr on failure. */
export async function python(source: string, args: string[] = [], timeoutMs = 300_000): Promise<string> {
  if (!existsSync(venvPython)) throw new Error(`${venvPython} is missing: run \`bash .ci/setup\` first`);
  try {
    const { stdout } = await run(venvPython, ['-c', source, ...args], {
      timeout: timeoutMs,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '2' },
    });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`python failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}
