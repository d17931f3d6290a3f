// ONNX Runtime (onnxruntime-node) is an optional peer dependency: `npm install heimdall-torch` does not install
// it, because its install script downloads the CUDA execution provider (hundreds of MB, from outside the npm
// registry) on Linux x64, which fails offline. What needs it — exportOnnx()'s validation and loadModel() — loads
// it here, and gets one error naming the package and the command when it is absent. The CPU provider that both
// use ships inside the npm package itself. (No onnxruntime-node types here: this file's declarations are public,
// and must compile where onnxruntime-node is not installed; runtime_load.ts imports it.)
import { createRequire } from 'node:module';
import { HeimdallError } from '../errors.js';

/** The range package.json's peerDependencies names (kept equal; test/package checks it). */
export const ONNXRUNTIME_RANGE = '^1.30.0';
/** The command that installs it with the CPU provider only (its install script told to download nothing). */
export const ONNXRUNTIME_INSTALL = `npm install onnxruntime-node@${ONNXRUNTIME_RANGE} --onnxruntime-node-install=skip`;

export class OnnxRuntimeMissingError extends HeimdallError<'HEIMDALL_ONNXRUNTIME_MISSING'> {
  constructor(purpose: string, alternative: string | null, cause?: unknown) {
    super('HEIMDALL_ONNXRUNTIME_MISSING',
      `${purpose} needs ONNX Runtime, and the package onnxruntime-node is not installed. It is an optional peer ` +
      `dependency of heimdall-torch (not installed with it, so that nothing is downloaded from outside the npm ` +
      `registry). Install it next to heimdall-torch: \`${ONNXRUNTIME_INSTALL}\` (the CPU provider, which is all ` +
      `heimdall-torch uses; without --onnxruntime-node-install=skip its install script also downloads the CUDA ` +
      `provider)${alternative ? `, or ${alternative}` : ''}.`, cause !== undefined ? { cause } : undefined);
    this.name = 'OnnxRuntimeMissingError';
  }
}

const require = createRequire(import.meta.url);

/** True when onnxruntime-node resolves from this package (where `import('onnxruntime-node')` looks). */
export function onnxRuntimeAvailable(): boolean {
  try {
    require.resolve('onnxruntime-node');
    return true;
  } catch {
    return false;
  }
}

/** Throws OnnxRuntimeMissingError (before any work is done) when onnxruntime-node is not installed. */
export function requireOnnxRuntime(purpose: string, alternative: string | null = null): void {
  if (!onnxRuntimeAvailable()) throw new OnnxRuntimeMissingError(purpose, alternative);
}
