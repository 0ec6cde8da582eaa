import { cloudflareTest } from '@cloudflare/vitest-pool-workers'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  plugins: [cloudflareTest({ wrangler: { configPath: '../wrangler.toml' } })],
  test: {
    name: 'gateway',
    root: import.meta.dirname,
    include: ['test/**/*.workers.test.ts', 'src/**/*.workers.test.ts'],
  },
})
