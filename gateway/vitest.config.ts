import path from 'node:path'
import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-pool-workers'
import { defineConfig } from 'vitest/config'
import { textModulesPlugin } from './test/node/text-modules-plugin.ts'
import { TEST_BINDINGS, TEST_PREAUTH_LIMIT } from './test/test-env.ts'

export default defineConfig(async () => {
  // Applied by each test file (applyD1Migrations) to its own fresh D1.
  const migrations = await readD1Migrations(path.join(import.meta.dirname, 'migrations'))
  return {
    plugins: [
      // Chart.js's browser bundle as text, as wrangler bundles it (the experiments dashboard serves it).
      textModulesPlugin(),
      cloudflareTest({
        wrangler: { configPath: '../wrangler.toml' },
        miniflare: {
          bindings: { ...TEST_BINDINGS, TEST_MIGRATIONS: migrations },
          // A small pre-auth IP limit, so a test can reach it (wrangler.toml's is sized for real traffic).
          ratelimits: { PREAUTH_LIMITER: { simple: { limit: TEST_PREAUTH_LIMIT, period: 60 } } },
        },
      }),
    ],
    test: {
      name: 'gateway',
      // After the node project, one file at a time: its tests time hedges, cold-start waits and breakers against
      // budgets of tens to hundreds of milliseconds, which a second test file on the 2 cores upsets (39 s in all).
      sequence: { groupOrder: 1 },
      maxWorkers: 1,
      root: import.meta.dirname,
      include: ['test/**/*.workers.test.ts', 'src/**/*.workers.test.ts'],
      // Runner stand-ins: real HTTP servers on 127.0.0.1 in Node, which the Worker under test calls.
      globalSetup: ['test/node/global-setup.ts'],
      // The gateway logs a JSON line per request: captured per test, printed only when the test fails.
      setupFiles: ['test/capture-logs.ts'],
    },
  }
})
