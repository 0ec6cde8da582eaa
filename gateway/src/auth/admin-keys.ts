/**
 * The key admin API (shared/src/schemas/api-keys.ts), mounted at /admin/keys, for keys with the `admin` scope.
 * @module
 */
import {
  ApiKeyIdSchema,
  type ApiKeyList,
  AppError,
  CreateApiKeyRequestSchema,
  TenantSchema,
} from '@twinserve/shared'
import { Hono } from 'hono'
import { z } from 'zod'
import type { AppEnv } from '../app-env.ts'
import { adminApi } from '../guard.ts'
import { readJsonBody } from '../http/json-body.ts'
import { MAX_ADMIN_BODY_BYTES, pathParam, queryParams } from '../http/request-params.ts'
import { log } from '../util/log.ts'
import { createKey, listKeys, revokeKey } from './api-key-store.ts'
import { forgetCachedKeys } from './key-cache.ts'

const ListQuerySchema = z.strictObject({
  tenant: TenantSchema.optional(),
  include_revoked: z.enum(['true', 'false']).default('false'),
})

export const adminKeys = new Hono<AppEnv>()
  .post('/', adminApi(), async (c) => {
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
  .get('/', adminApi(), async (c) => {
    const query = queryParams(c, ListQuerySchema)
    const keys = await listKeys(c.env.DB, {
      tenant: query.tenant,
      includeRevoked: query.include_revoked === 'true',
    })
    const body: ApiKeyList = { keys }
    return c.json(body)
  })
  .delete('/:id', adminApi(), async (c) => {
    const id = pathParam(c, 'id', ApiKeyIdSchema)
    const revoked = await revokeKey(c.env.DB, id)
    if (!revoked) throw new AppError('NOT_FOUND', `no API key '${id}'`)
    forgetCachedKeys()
    log('info', 'api_key_revoked', {
      request_id: c.get('requestId'),
      by: c.get('principal').key_id,
      key_id: revoked.id,
    })
    return c.json(revoked)
  })
