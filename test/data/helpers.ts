// Shared by the Heimdall data tests: builds the heimdall_data_tool developer tool (cmake, into build-tools/,
// the same directory and flags as the other tool-based tests; a lock folder serialises concurrent builds)
// and runs it and the numpy references of test/data/reference.py.
import { join } from 'node:path';
import { tempDir as testTempDir } from '../helpers/tmp.js';
import { BUILD_DIR, PYTHON, ROOT, buildTool as buildToolTarget, runJsonProcess, runProcess } from '../helpers/tools.js';

export { BUILD_DIR, PYTHON, ROOT };

export const TOOL = join(BUILD_DIR, 'heimdall_data_tool');
export const REFERENCE = join(ROOT, 'test/data/reference.py');
/** Building libtorch code from scratch takes minutes on 2 cores. */
export const BUILD_TIMEOUT_MS = 30 * 60_000;

export type { RunResult } from '../helpers/tools.js';

/** Builds (or brings up to date) build-tools/heimdall_data_tool. */
export const buildTool = (): Promise<string> => buildToolTarget('heimdall_data_tool');
export const run = (cmd: string, args: string[]) => runProcess(cmd, args, 1);
export const runJson = <T = any>(cmd: string, args: string[]) => runJsonProcess<T>(cmd, args, 1);

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
  return testTempDir(`heimdall-data-${prefix}-`);
}
