import {
  ApiKeyIdSchema,
  type ApiKeyList,
  AppError,
  CreateApiKeyRequestSchema,
  TenantSchema,
} from '@twinserve/shared'
import { Hono } from 'hono'
import { z } from 'zod'
import type { AppEnv } from '../env.ts'
import { createKey, listKeys, revokeKey } from '../lib/api-key-store.ts'
import { describeIssues, readJsonBody } from '../lib/json-body.ts'
import { forgetCachedKeys } from '../lib/key-cache.ts'
import { log } from '../lib/log.ts'
import { apiKeyAuth } from '../middleware/auth/index.ts'
import { rateLimit } from '../middleware/rate-limit/index.ts'
import { countAs } from '../middleware/request-log/index.ts'

const MAX_ADMIN_BODY_BYTES = 64 * 1024

const ListQuerySchema = z.strictObject({
  tenant: TenantSchema.optional(),
  include_revoked: z.enum(['true', 'false']).default('false'),
})

/** The key admin API (shared/src/schemas/api-keys.ts), for keys with the `admin` scope. */
export const adminKeys = new Hono<AppEnv>()
  .use('/admin/keys', countAs('admin'), apiKeyAuth({ scope: 'admin' }), rateLimit())
  .use('/admin/keys/*', countAs('admin'), apiKeyAuth({ scope: 'admin' }), rateLimit())
  .post('/admin/keys', async (c) => {
    const { data } = await readJsonBody(c, CreateApiKeyRequestSchema, MAX_ADMIN_BODY_BYTES)
    const created = await createKey(c.env.DB, data)
    log('info', 'api_key_created', {
      request_id: c.get('requestId'),
      by: c.get('principal').key_id,
      key_id: created.id,
      tenant: created.tenant,
      scopes: created.scopes.join(','),
    })
    return c.json(created, 201)
  })
  .get('/admin/keys', async (c) => {
    const query = ListQuerySchema.safeParse(c.req.query())
    if (!query.success) throw new AppError('INVALID_REQUEST', describeIssues(query.error, 'query'))
    const keys = await listKeys(c.env.DB, {
      tenant: query.data.tenant,
      includeRevoked: query.data.include_revoked === 'true',
    })
    const body: ApiKeyList = { keys }
    return c.json(body)
  })
  .delete('/admin/keys/:id', async (c) => {
    const id = ApiKeyIdSchema.safeParse(c.req.param('id'))
    if (!id.success) throw new AppError('INVALID_REQUEST', describeIssues(id.error, 'id'))
    const revoked = await revokeKey(c.env.DB, id.data)
    if (!revoked) throw new AppError('NOT_FOUND', `no API key '${id.data}'`)
    forgetCachedKeys()
    log('info', 'api_key_revoked', {
      request_id: c.get('requestId'),
      by: c.get('principal').key_id,
      key_id: revoked.id,
    })
    return c.json(revoked)
  })
