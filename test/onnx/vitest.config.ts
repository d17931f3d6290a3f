// The ONNX suite alone: `npx vitest run --config test/onnx/vitest.config.ts`.
// (Same settings as test/vitest.config.ts, with the root resolved from this file rather than the cwd, and no
// service setup: these tests need only the .venv's Python and the export_onnx tool they build.)
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/onnx/**/*.test.ts'],
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});
