/**
 * API keys in D1 (table `api_keys`, gateway/migrations/0001_api_keys.sql).
 * @module
 */
import {
  type ApiKey,
  ApiKeyScopeSchema,
  type CreateApiKeyRequest,
  type CreatedApiKey,
} from '@twinserve/shared'
import { z } from 'zod'
import { where } from '../util/d1-where.ts'
import { generateKeySecret } from './api-key-secret.ts'
import type { Principal } from './principal.ts'

interface KeyRow {
  id: string
  key_hash: string
  prefix: string
  tenant: string
  name: string | null
  scopes: string
  models: string
  rate_limit_rps: number | null
  rate_limit_burst: number | null
  daily_quota: number | null
  /** NULL on rows made before migration 0003 too. */
  tokens_per_minute: number | null
  created_at: string
  revoked_at: string | null
}

// Rows are ours, but parse the JSON columns anyway: a hand-edited row must not widen a key's rights.
const ScopesColumn = z.array(ApiKeyScopeSchema)
const ModelsColumn = z.array(z.string())

function toApiKey(r: KeyRow): ApiKey {
  return {
    id: r.id,
    prefix: r.prefix,
    tenant: r.tenant,
    name: r.name,
    scopes: ScopesColumn.parse(JSON.parse(r.scopes)),
    models: ModelsColumn.parse(JSON.parse(r.models)),
    rate_limit:
      r.rate_limit_rps !== null && r.rate_limit_burst !== null
        ? { requests_per_second: r.rate_limit_rps, burst: r.rate_limit_burst }
        : null,
    daily_quota: r.daily_quota,
    tokens_per_minute: r.tokens_per_minute ?? null,
    created_at: r.created_at,
    revoked_at: r.revoked_at,
  }
}

export async function createKey(db: D1Database, req: CreateApiKeyRequest): Promise<CreatedApiKey> {
  const secret = await generateKeySecret()
  const createdAt = new Date().toISOString()
  const row: KeyRow = {
    id: secret.id,
    key_hash: secret.hash,
    prefix: secret.prefix,
    tenant: req.tenant,
    name: req.name ?? null,
    scopes: JSON.stringify(req.scopes),
    models: JSON.stringify([...new Set(req.models)]),
    rate_limit_rps: req.rate_limit?.requests_per_second ?? null,
    rate_limit_burst: req.rate_limit?.burst ?? null,
    daily_quota: req.daily_quota ?? null,
    tokens_per_minute: req.tokens_per_minute ?? null,
    created_at: createdAt,
    revoked_at: null,
  }
  await db
    .prepare(
      `INSERT INTO api_keys (id, key_hash, prefix, tenant, name, scopes, models, rate_limit_rps,
         rate_limit_burst, daily_quota, tokens_per_minute, created_at, revoked_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(
      row.id,
      row.key_hash,
      row.prefix,
      row.tenant,
      row.name,
      row.scopes,
      row.models,
      row.rate_limit_rps,
      row.rate_limit_burst,
      row.daily_quota,
      row.tokens_per_minute,
      row.created_at,
      row.revoked_at,
    )
    .run()
  return { ...toApiKey(row), key: secret.token }
}

export type KeyLookup = { found: false } | { found: true; revoked: boolean; principal: Principal }

export async function findKeyByHash(db: D1Database, hash: string): Promise<KeyLookup> {
  const row = await db
    .prepare('SELECT * FROM api_keys WHERE key_hash = ?')
    .bind(hash)
    .first<KeyRow>()
  if (!row) return { found: false }
  const key = toApiKey(row)
  return {
    found: true,
    revoked: key.revoked_at !== null,
    principal: {
      key_id: key.id,
      tenant: key.tenant,
      scopes: key.scopes,
      models: key.models,
      rate_limit: key.rate_limit,
      daily_quota: key.daily_quota,
      tokens_per_minute: key.tokens_per_minute,
    },
  }
}

export async function listKeys(
  db: D1Database,
  opts: { tenant?: string | undefined; includeRevoked: boolean },
): Promise<ApiKey[]> {
  const filter = where({ tenant: opts.tenant }, opts.includeRevoked ? [] : ['revoked_at IS NULL'])
  const { results } = await db
    .prepare(`SELECT * FROM api_keys ${filter.sql} ORDER BY created_at, id`)
    .bind(...filter.binds)
    .all<KeyRow>()
  return results.map(toApiKey)
}

/** Revokes a key (idempotent: a second revoke keeps the first time); undefined when no such key. */
export async function revokeKey(db: D1Database, id: string): Promise<ApiKey | undefined> {
  const row = await db
    .prepare('UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? RETURNING *')
    .bind(new Date().toISOString(), id)
    .first<KeyRow>()
  return row ? toApiKey(row) : undefined
}
