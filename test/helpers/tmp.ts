import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, onTestFinished } from 'vitest';

// Directories made outside a test (describe, beforeAll) live until the end of the file; registered once, when a
// test file first imports this module (during collection, so the hook belongs to the file).
const fileDirs: string[] = [];
afterAll(() => {
  for (const d of fileDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * A temporary directory, removed when the test that made it finishes (made outside a test: when the file
 * finishes). Trainings write hundreds of MB each: keeping them to the end of a file filled small disks.
 */
export function tempDir(prefix = 'heimdall-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  } catch {
    fileDirs.push(dir); // not inside a test
  }
  return dir;
}
