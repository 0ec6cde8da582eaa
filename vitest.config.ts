import { defineConfig } from 'vitest/config'

/**
 * One `vitest run` for the whole repository: node tests (shared, gpu-runner, the zoos' tooling, cross-component
 * tests in test/) and the gateway's tests inside workerd.
 */
export default defineConfig({
  test: {
    reporters: ['default', './scripts/summary-reporter.ts'],
    projects: [
      {
        test: {
          name: 'node',
          include: [
            'shared/src/**/*.test.ts',
            'gpu-runner/src/**/*.test.ts',
            'zoo/**/*.test.ts',
            'test/**/*.test.ts',
            // The gateway's Node-side helpers (wrangler dev as a real process).
            'gateway/dev/**/*.test.ts',
          ],
          // The zoos' one-off scripts unpack downloaded data into git-ignored caches: any tests in there are not ours.
          exclude: ['**/node_modules/**', '**/.cache/**'],
          pool: 'forks',
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      './gateway/vitest.config.ts',
    ],
  },
})
