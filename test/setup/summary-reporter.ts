// Prints one closing line, "N passed, N failed, N skipped", after vitest's own report, so CI logs read
// the same whatever reporter is in use.
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    let passed = 0, failed = 0, skipped = 0;
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const s = t.result().state;
        if (s === 'passed') passed++;
        else if (s === 'failed') failed++;
        else skipped++;
      }
      if (m.state() === 'failed' && [...m.children.allTests()].length === 0) failed++; // a file that failed to load
    }
    const line = `${passed} passed, ${failed} failed, ${skipped} skipped`;
    // After vitest's own summary: the last line of the run.
    process.once('exit', () => process.stdout.write(`\n${line}\n`));
  }
}
