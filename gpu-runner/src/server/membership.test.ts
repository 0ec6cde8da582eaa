import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { RUNNER_REGISTRY_PATHS, type RunnerRegistration, verifyRequest } from '@twinserve/shared'
import { afterEach, describe, expect, it } from 'vitest'
import { createLogger } from './logger.ts'
import { Membership } from './membership.ts'

const SECRET = 'membership-secret-0123456789'
const closers: (() => void)[] = []
afterEach(() => {
  for (const c of closers.splice(0)) c()
})

/** A registry that forgets the runner once (answers its first heartbeat 404), like a restarted gateway. */
async function forgetfulRegistry() {
  const seen: { path: string; verified: boolean; body: unknown }[] = []
  let forgot = false
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => {
      body += c.toString()
    })
    req.on('end', () => {
      void verifyRequest(SECRET, {
        method: req.method ?? '',
        path: req.url ?? '',
        body,
        headers: req.headers,
      }).then((v) => {
        seen.push({ path: req.url ?? '', verified: v.ok, body: JSON.parse(body) })
        if (req.url === RUNNER_REGISTRY_PATHS.heartbeat && !forgot) {
          forgot = true
          res.writeHead(404).end('{"error":"unknown runner"}')
          return
        }
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ ok: true, heartbeat_interval_ms: 30 }))
      })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  closers.push(() => server.close())
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

const state = (): RunnerRegistration => ({
  runner_id: 'r1',
  url: 'http://127.0.0.1:1',
  provider: 'cpu',
  models: [],
  load: { queue_depth: 3, in_flight: 1, capacity: 8 },
  draining: false,
})

describe('Membership', () => {
  it('registers, heartbeats at the acknowledged interval, re-registers when forgotten, deregisters', async () => {
    const reg = await forgetfulRegistry()
    const m = new Membership({
      gatewayUrl: reg.url,
      secret: SECRET,
      state,
      logger: createLogger({ level: 'error' }),
    })
    m.start()
    const deadline = Date.now() + 5000
    while (reg.seen.filter((s) => s.path === RUNNER_REGISTRY_PATHS.heartbeat).length < 3) {
      if (Date.now() > deadline)
        throw new Error(`too few heartbeats: ${JSON.stringify(reg.seen.map((s) => s.path))}`)
      await new Promise((r) => setTimeout(r, 10))
    }
    await m.stop()
    const paths = reg.seen.map((s) => s.path)
    const { register, heartbeat, deregister } = RUNNER_REGISTRY_PATHS
    expect(paths.slice(0, 3)).toEqual([register, heartbeat, register])
    expect(paths.at(-1)).toBe(deregister)
    expect(reg.seen.every((s) => s.verified)).toBe(true)
    expect(reg.seen[1]?.body).toMatchObject({ load: { queue_depth: 3, in_flight: 1, capacity: 8 } })
    expect(reg.seen.at(-1)?.body).toEqual({ runner_id: 'r1' })
    expect(m.isRegistered).toBe(false)
  })
})
