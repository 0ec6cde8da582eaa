import {
  RUNNER_REGISTRY_PATHS,
  RunnerDeregistrationSchema,
  RunnerRegistrationSchema,
} from '@twinserve/shared'
import { Hono } from 'hono'
import type { AppEnv } from '../env.ts'
import { parseJsonText } from '../lib/json-body.ts'
import { registryStub } from '../lib/registry-stub.ts'
import { runnerSignature } from '../middleware/runner-signature/index.ts'

/** The runner ⇄ gateway membership protocol (shared/src/schemas/registry.ts), HMAC-signed by the runners. */
export const runnerMembership = new Hono<AppEnv>()
  .post(RUNNER_REGISTRY_PATHS.register, runnerSignature(), async (c) => {
    const reg = parseJsonText(c.get('signedBody'), RunnerRegistrationSchema)
    return c.json(await registryStub(c.env).register(reg, 'register'))
  })
  .post(RUNNER_REGISTRY_PATHS.heartbeat, runnerSignature(), async (c) => {
    const reg = parseJsonText(c.get('signedBody'), RunnerRegistrationSchema)
    return c.json(await registryStub(c.env).register(reg, 'heartbeat'))
  })
  .post(RUNNER_REGISTRY_PATHS.deregister, runnerSignature(), async (c) => {
    const { runner_id } = parseJsonText(c.get('signedBody'), RunnerDeregistrationSchema)
    return c.json(await registryStub(c.env).deregister(runner_id))
  })
