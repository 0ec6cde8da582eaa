/**
 * vitest globalSetup for the gateway project (runs in Node, outside workerd): a control API on 127.0.0.1 with
 * which workerd tests start, reconfigure, inspect and kill runner stand-ins (runner-stand-in.ts).
 *
 *   POST   /stand-ins            { id, models }      → StandInStats (url included)
 *   GET    /stand-ins/:id                            → StandInStats
 *   PUT    /stand-ins/:id/behavior  StandInBehavior  → 204
 *   DELETE /stand-ins/:id                            → 204 (killed: connections dropped, port closed)
 * @module
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestProject } from 'vitest/node'
import { RunnerStandIn } from '../../dev/runner-stand-in.ts'
import { type StandInBehavior, TEST_SIGNING_SECRET } from '../test-env.ts'

async function json(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null')
}

function reply(res: ServerResponse, status: number, body?: unknown): void {
  res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json' })
  res.end(body === undefined ? undefined : JSON.stringify(body))
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const standIns = new Map<string, RunnerStandIn>()
  const server = createServer((req, res) => {
    const handle = async () => {
      const url = new URL(req.url ?? '/', 'http://control')
      const parts = url.pathname.split('/').filter(Boolean)
      if (parts[0] !== 'stand-ins') return reply(res, 404, { error: 'no route' })
      const id = parts[1]
      if (req.method === 'POST' && id === undefined) {
        const body = (await json(req)) as { id: string; models: string[] }
        if (standIns.has(body.id)) return reply(res, 409, { error: `stand-in ${body.id} exists` })
        const r = await RunnerStandIn.start(body.id, body.models, TEST_SIGNING_SECRET)
        standIns.set(body.id, r)
        return reply(res, 201, r.stats)
      }
      const r = id === undefined ? undefined : standIns.get(id)
      if (!r || id === undefined) return reply(res, 404, { error: `no stand-in ${id}` })
      if (req.method === 'GET') return reply(res, 200, r.stats)
      if (req.method === 'PUT' && parts[2] === 'behavior') {
        r.behavior = (await json(req)) as StandInBehavior
        return reply(res, 204)
      }
      if (req.method === 'DELETE') {
        standIns.delete(id)
        await r.kill()
        return reply(res, 204)
      }
      return reply(res, 405, { error: 'method' })
    }
    handle().catch((err: unknown) => reply(res, 500, { error: String(err) }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  project.provide('standInControlUrl', `http://127.0.0.1:${(server.address() as AddressInfo).port}`)
  return async () => {
    await Promise.all([...standIns.values()].map((r) => r.kill()))
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
