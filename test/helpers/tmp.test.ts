// The suite's temporary files stay inside one directory per run (test/setup/services.ts), and a test's
// directories go when the test ends: runs once filled a CI machine's disk with trainings left behind.
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from './tmp.js';

describe('test temporary directories', () => {
  const fileLevel = tempDir();
  let testLevel = '';
  it('live in the run directory, which the setup made the temporary directory of the test processes', () => {
    expect(basename(tmpdir())).toMatch(/^heimdall-tests-/);
    testLevel = tempDir();
    expect(dirname(testLevel)).toBe(tmpdir());
    expect(existsSync(testLevel)).toBe(true);
  });
  it('are removed when the test that made them ends; those made outside a test stay to the end of the file', () => {
    expect(testLevel).not.toBe('');
    expect(existsSync(testLevel)).toBe(false);
    expect(existsSync(fileLevel)).toBe(true);
  });
});
