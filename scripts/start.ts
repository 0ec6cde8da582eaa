/**
 * `npm start`: brings Twinserve up locally. Today that is the gateway Worker in workerd (wrangler dev) on
 * http://127.0.0.1:8787; the runner on the bundled demo package joins as it lands.
 * @module
 */
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const wranglerBin = require.resolve('wrangler/bin/wrangler.js')
const port = process.env.GATEWAY_PORT ?? '8787'

const child = spawn(
  process.execPath,
  [
    wranglerBin,
    'dev',
    '--ip',
    '127.0.0.1',
    '--port',
    port,
    '--inspector-port',
    '0',
    '--show-interactive-dev-session=false',
  ],
  {
    stdio: 'inherit',
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' },
  },
)
console.log(
  `twinserve: gateway starting on http://127.0.0.1:${port} — try: curl http://127.0.0.1:${port}/v2/health/live`,
)
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig))
child.on('exit', (code) => process.exit(code ?? 0))
