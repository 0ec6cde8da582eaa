/**
 * `GET /openapi.json` (mounted there): the OpenAPI 3.1 document of the gateway's API, public.
 * @module
 */
import { Hono } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { guard } from '../guard.ts'
import { openApiDocument } from './openapi-document.ts'

export const openapi = new Hono<AppEnv>().get('/', guard({ access: 'public' }), (c) =>
  c.json(openApiDocument(c.get('config').GATEWAY_VERSION)),
)
