import { Hono } from 'hono'
import type { AppEnv } from '../env.ts'
import { registryStub } from '../lib/registry-stub.ts'
import { apiKeyAuth } from '../middleware/auth/index.ts'
import { countAs } from '../middleware/request-log/index.ts'

/** The registry as the gateway sees it (RunnerList): membership, health, breakers, in-flight counts. */
export const adminRunners = new Hono<AppEnv>().get(
  '/admin/runners',
  countAs('admin'),
  apiKeyAuth({ scope: 'admin' }),
  async (c) => c.json(await registryStub(c.env).list()),
)
