/**
 * Prints one plain closing line, `tests: N passed, N failed[, N skipped]`, after vitest's own summary, so that
 * CI (and a person scrolling a log) reads the outcome the same way for every project in the run.
 * @module
 */
import type { Reporter, TestModule } from 'vitest/node'

export default class SummaryReporter implements Reporter {
  onTestRunEnd(
    testModules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<unknown>,
  ): void {
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const mod of testModules) {
      // A file that fails to load has no test cases; count it as a failure, not as nothing.
      if (mod.state() === 'failed' && [...mod.children.allTests()].length === 0) failed++
      for (const t of mod.children.allTests()) {
        const s = t.result().state
        if (s === 'passed') passed++
        else if (s === 'failed') failed++
        else skipped++
      }
    }
    failed += unhandledErrors.length
    const tail = skipped > 0 ? `, ${skipped} skipped` : ''
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed${tail}\n`)
  }
}
