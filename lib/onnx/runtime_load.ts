// onnxruntime-node, imported on first use (runtime.ts: why it is an optional peer dependency).
import { createRequire } from 'node:module';
import type * as Ort from 'onnxruntime-node';
import { OnnxRuntimeMissingError, requireOnnxRuntime } from './runtime.js';

const require = createRequire(import.meta.url);

let loaded: typeof Ort | null = null;

/** onnxruntime-node, imported once; OnnxRuntimeMissingError when it is not installed. */
export async function loadOnnxRuntime(purpose: string, alternative: string | null = null): Promise<typeof Ort> {
  if (loaded) return loaded;
  requireOnnxRuntime(purpose, alternative);
  try {
    loaded = (await import('onnxruntime-node')) as typeof Ort;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') throw new OnnxRuntimeMissingError(purpose, alternative, e);
    throw e;
  }
  return loaded;
}

/** "onnxruntime-node 1.30.0", or null when it is not installed. */
export function onnxRuntimeVersion(): string | null {
  try {
    return `onnxruntime-node ${(require('onnxruntime-node/package.json') as { version: string }).version}`;
  } catch {
    return null;
  }
}
