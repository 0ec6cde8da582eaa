import {
  AppError,
  RUNNER_REGISTRY_PATHS,
  RunnerDeregistrationSchema,
  type RunnerRegistration,
  RunnerRegistrationSchema,
} from '@twinserve/shared'
import { Hono } from 'hono'
import type { AppEnv } from '../env.ts'
import { parseJsonText } from '../lib/json-body.ts'
import { registryStub } from '../lib/registry-stub.ts'
import { runnerPool } from '../lib/runner-pool.ts'
import { runnerSignature } from '../middleware/runner-signature/index.ts'

/** The shared schema takes any URL; the gateway can only call http(s) runners, so it says so up front. */
function checkedRegistration(body: string): RunnerRegistration {
  const reg = parseJsonText(body, RunnerRegistrationSchema)
  const { protocol } = new URL(reg.url)
  if (protocol !== 'http:' && protocol !== 'https:')
    throw new AppError('INVALID_REQUEST', `url: runners are called over http(s), not ${protocol}`)
  return reg
}

/**
 * The runner ⇄ gateway membership protocol (shared/src/schemas/registry.ts), HMAC-signed by the runners.
 * The isolate that takes a membership call drops its routing snapshot, so it routes by the news at once;
 * the others catch up within ROUTING_CACHE_MS.
 */
export const runnerMembership = new Hono<AppEnv>()
  .post(RUNNER_REGISTRY_PATHS.register, runnerSignature(), async (c) => {
    const reg = checkedRegistration(c.get('signedBody'))
    const ack = await registryStub(c.env).register(reg, 'register')
    runnerPool(c.get('config')).invalidate()
    return c.json(ack)
  })
  .post(RUNNER_REGISTRY_PATHS.heartbeat, runnerSignature(), async (c) => {
    const reg = checkedRegistration(c.get('signedBody'))
    const ack = await registryStub(c.env).register(reg, 'heartbeat')
    runnerPool(c.get('config')).invalidate()
    return c.json(ack)
  })
  .post(RUNNER_REGISTRY_PATHS.deregister, runnerSignature(), async (c) => {
    const { runner_id } = parseJsonText(c.get('signedBody'), RunnerDeregistrationSchema)
    const ack = await registryStub(c.env).deregister(runner_id)
    runnerPool(c.get('config')).invalidate()
    return c.json(ack)
  })
