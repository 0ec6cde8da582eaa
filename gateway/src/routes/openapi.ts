import { Hono } from 'hono'
import type { AppEnv } from '../env.ts'
import { openApiDocument } from '../openapi/index.ts'

/** The OpenAPI 3.1 document of the gateway's API, public. */
export const openapi = new Hono<AppEnv>().get('/openapi.json', (c) =>
  c.json(openApiDocument(c.get('config').GATEWAY_VERSION)),
)
