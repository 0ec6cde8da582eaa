/**
 * The runner ⇄ gateway membership protocol (shared/src/schemas/registry.ts), mounted at RUNNER_REGISTRY_BASE and
 * HMAC-signed by the runners. The isolate that takes a membership call drops its routing snapshot, so it routes
 * by the news at once; the others catch up within ROUTING_CACHE_MS.
 * @module
 */
import {
  AppError,
  parseJsonText,
  RUNNER_REGISTRY_BASE,
  RUNNER_REGISTRY_PATHS,
  RunnerDeregistrationSchema,
  type RunnerRegistration,
  RunnerRegistrationSchema,
} from '@twinserve/shared'
import { type Context, Hono } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { guard } from '../guard.ts'
import { registryStub } from './registry-stub.ts'
import { runnerPool } from './runner-pool.ts'

/** The shared schema takes any URL; the gateway can only call http(s) runners, so it says so up front. */
function checkedRegistration(body: string): RunnerRegistration {
  const reg = parseJsonText(body, RunnerRegistrationSchema)
  const { protocol } = new URL(reg.url)
  if (protocol !== 'http:' && protocol !== 'https:')
    throw new AppError('INVALID_REQUEST', `url: runners are called over http(s), not ${protocol}`)
  return reg
}

/** A membership path below RUNNER_REGISTRY_BASE, where the sub-app is mounted. */
const below = (path: string) => path.slice(RUNNER_REGISTRY_BASE.length)

const signed = () => guard({ access: 'runner' })

/** Register and heartbeat are the same upsert (the body is the runner's full state); only the event differs. */
const upsert = (kind: 'register' | 'heartbeat') =>
  async function upsert(c: Context<AppEnv>) {
    const reg = checkedRegistration(c.get('signedBody'))
    const ack = await registryStub(c.env).register(reg, kind)
    runnerPool(c.get('config')).invalidate()
    return c.json(ack)
  }

export const runnerMembership = new Hono<AppEnv>()
  .post(below(RUNNER_REGISTRY_PATHS.register), signed(), upsert('register'))
  .post(below(RUNNER_REGISTRY_PATHS.heartbeat), signed(), upsert('heartbeat'))
  .post(below(RUNNER_REGISTRY_PATHS.deregister), signed(), async (c) => {
    const { runner_id } = parseJsonText(c.get('signedBody'), RunnerDeregistrationSchema)
    const ack = await registryStub(c.env).deregister(runner_id)
    runnerPool(c.get('config')).invalidate()
    return c.json(ack)
  })
