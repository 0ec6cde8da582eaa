/**
 * Test helpers that run inside workerd: calls to the gateway under test (SELF), signed runner calls, keys made
 * through the admin API, and the runner stand-ins' control API (test/node/global-setup.ts).
 * @module
 */
import { applyD1Migrations, env, SELF } from 'cloudflare:test'
import {
  type CreateApiKeyRequest,
  type CreatedApiKey,
  CreatedApiKeySchema,
  type ErrorBody,
  ErrorBodySchema,
  OpenAIErrorBodySchema,
  RUNNER_REGISTRY_PATHS,
  type RunnerRegistration,
  signRequest,
} from '@twinserve/shared'
import { expect, inject } from 'vitest'
import {
  type StandInBehavior,
  type StandInStats,
  TEST_ADMIN_SECRET,
  TEST_SIGNING_SECRET,
} from './test-env.ts'

export const GATEWAY = 'http://gateway.test'

export async function migrate(): Promise<void> {
  await applyD1Migrations(env.DB, env.TEST_MIGRATIONS)
}

export function gw(path: string, init?: RequestInit): Promise<Response> {
  return SELF.fetch(GATEWAY + path, init)
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/**
 * Asserts the error body and status, and returns the body in the shared shape: the OpenAI-compatible routes
 * (/v1/models, /v1/completions, /v1/chat/completions) answer the same error in OpenAI's shape.
 */
export async function expectError(res: Response, status: number, code: string): Promise<ErrorBody> {
  const text = await res.text()
  expect(res.status, text).toBe(status)
  const json = JSON.parse(text) as unknown
  const openai = OpenAIErrorBodySchema.safeParse(json)
  const body = openai.success
    ? {
        error: openai.data.error.message,
        code: openai.data.error.code,
        request_id: openai.data.request_id,
      }
    : ErrorBodySchema.parse(json)
  expect(body.code).toBe(code)
  expect(body.request_id).toBe(res.headers.get('x-request-id'))
  return body
}

export async function createKey(
  req: Omit<CreateApiKeyRequest, 'models'> & { models?: string[] },
  adminToken = TEST_ADMIN_SECRET,
): Promise<CreatedApiKey> {
  const res = await gw('/admin/keys', {
    method: 'POST',
    headers: { ...bearer(adminToken), 'content-type': 'application/json' },
    body: JSON.stringify(req),
  })
  const text = await res.text()
  expect(res.status, text).toBe(201)
  return CreatedApiKeySchema.parse(JSON.parse(text))
}

export interface SignOptions {
  secret?: string
  timestamp?: number
  /** Sign this body but send `body` (tampering). */
  signedBody?: string
}

/** A runner → gateway membership call, signed the way runners sign. */
export async function runnerCall(
  path: string,
  body: unknown,
  opts: SignOptions = {},
): Promise<Response> {
  const text = JSON.stringify(body)
  const headers = await signRequest(opts.secret ?? TEST_SIGNING_SECRET, {
    method: 'POST',
    path,
    body: opts.signedBody ?? text,
    ...(opts.timestamp !== undefined ? { timestamp: opts.timestamp } : {}),
  })
  return gw(path, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: text,
  })
}

export function registration(
  runnerId: string,
  url: string,
  models: Array<{ name: string; variants?: string[]; ready?: boolean }>,
  over: Partial<RunnerRegistration> = {},
): RunnerRegistration {
  return {
    runner_id: runnerId,
    url,
    provider: 'cpu',
    models: models.map((m) => ({
      name: m.name,
      variants: m.variants ?? ['shared'],
      experts: ['a', 'b'],
      ready: m.ready ?? true,
    })),
    load: { queue_depth: 0, in_flight: 0, capacity: 64 },
    draining: false,
    ...over,
  }
}

export async function register(
  reg: RunnerRegistration,
  kind: 'register' | 'heartbeat' = 'register',
) {
  const res = await runnerCall(RUNNER_REGISTRY_PATHS[kind], reg)
  expect(res.status, await res.clone().text()).toBe(200)
}

export async function deregister(runnerId: string) {
  const res = await runnerCall(RUNNER_REGISTRY_PATHS.deregister, { runner_id: runnerId })
  expect(res.status).toBe(200)
}

/** Runner stand-ins: real HTTP servers in Node (see dev/runner-stand-in.ts). */
export const standIns = {
  async start(id: string, models: string[]): Promise<StandInStats> {
    const res = await fetch(`${inject('standInControlUrl')}/stand-ins`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id, models }),
    })
    expect(res.status, await res.clone().text()).toBe(201)
    return (await res.json()) as StandInStats
  },
  async stats(id: string): Promise<StandInStats> {
    const res = await fetch(`${inject('standInControlUrl')}/stand-ins/${id}`)
    expect(res.status).toBe(200)
    return (await res.json()) as StandInStats
  },
  async behave(id: string, behavior: StandInBehavior): Promise<void> {
    const res = await fetch(`${inject('standInControlUrl')}/stand-ins/${id}/behavior`, {
      method: 'PUT',
      body: JSON.stringify(behavior),
    })
    expect(res.status).toBe(204)
  },
  async kill(id: string): Promise<void> {
    const res = await fetch(`${inject('standInControlUrl')}/stand-ins/${id}`, { method: 'DELETE' })
    expect(res.status).toBe(204)
  },
}

/** A small valid V2 inference body. */
export function inferBody(values: number[] = [1, 2, 3, 4], parameters?: Record<string, unknown>) {
  return {
    id: 'req-1',
    ...(parameters ? { parameters } : {}),
    inputs: [{ name: 'x', shape: [1, values.length], datatype: 'FP32', data: values }],
  }
}

export function infer(
  model: string,
  key: string,
  body: unknown = inferBody(),
  headers: Record<string, string> = {},
) {
  return gw(`/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { ...bearer(key), 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
}

/** Starts `n` stand-in runners (`${prefix}-0…`) and registers them for `model`; returns their ids. */
export async function fleet(prefix: string, n: number, model: string): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < n; i++) {
    const id = `${prefix}-${i}`
    const s = await standIns.start(id, [model])
    await register(registration(id, s.url, [{ name: model }]))
    ids.push(id)
  }
  return ids
}

/** Deregisters the runners and stops their stand-ins. */
export async function retire(ids: string[]): Promise<void> {
  for (const id of ids) {
    await deregister(id)
    await standIns.kill(id).catch(() => undefined)
  }
}
