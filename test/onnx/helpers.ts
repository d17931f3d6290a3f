// Shared by the ONNX tests: builds the export_onnx developer tool (cmake, into build-tools/, incremental) and
// runs the Python references of test/onnx/reference.py with the project's .venv.
import { join } from 'node:path';
import { tempDir as testTempDir } from '../helpers/tmp.js';
import { BUILD_DIR, PYTHON, ROOT, buildTool as buildToolTarget, runJsonProcess, runProcess } from '../helpers/tools.js';

export { BUILD_DIR, PYTHON, ROOT };

export const TOOL = join(BUILD_DIR, 'export_onnx');
export const REFERENCE = join(ROOT, 'test/onnx/reference.py');

// The reference's thresholds (issue 5): max |Δ| ≤ 1e-4, mean |Δ| ≤ 1e-5.
export const MAX_ABS = 1e-4;
export const MEAN_ABS = 1e-5;

export type { RunResult } from '../helpers/tools.js';

/** Builds (or brings up to date) build-tools/export_onnx. */
export const buildTool = (): Promise<string> => buildToolTarget('export_onnx');
export const run = (cmd: string, args: string[]) => runProcess(cmd, args, 2);
export const runJson = <T = any>(cmd: string, args: string[]) => runJsonProcess<T>(cmd, args, 2);

export function tempDir(prefix = 'heimdall-onnx-'): string {
  return testTempDir(prefix);
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
