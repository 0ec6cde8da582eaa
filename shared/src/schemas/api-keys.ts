/**
 * The gateway's admin API for API keys. A key belongs to a tenant, carries scopes (`infer` for the V2 model
 * routes, `admin` for /admin and /metrics) and the models it may use; the gateway stores only its SHA-256 and
 * shows the key itself once, in the create response.
 *
 *   POST   /admin/keys        CreateApiKeyRequest → 201 CreatedApiKey
 *   GET    /admin/keys        ?tenant=…&include_revoked=true → ApiKeyList
 *   DELETE /admin/keys/{id}   → ApiKey (revoked_at set; idempotent)
 * @module
 */
import { z } from 'zod'
import { NameSchema } from './twin-package.ts'

export const API_KEY_SCOPES = ['infer', 'admin'] as const
export const ApiKeyScopeSchema = z.enum(API_KEY_SCOPES)
export type ApiKeyScope = z.infer<typeof ApiKeyScopeSchema>

/** In `models`, grants every model (present and future). */
export const ALL_MODELS = '*'

export const TenantSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, dot, dash, underscore; 1-64 chars')

export const ApiKeyIdSchema = z
  .string()
  .regex(/^key_[0-9a-f]{16}$/, 'a key id like key_0123456789abcdef')

/** A token bucket: `burst` requests at once, refilled at `requests_per_second`. */
export const RateLimitSchema = z.strictObject({
  requests_per_second: z.number().positive().max(1_000_000),
  burst: z.number().int().positive().max(1_000_000),
})
export type RateLimit = z.infer<typeof RateLimitSchema>

/** Tokens (prompt + completion) a key may generate per minute; the bucket holds one minute's worth. */
export const TokensPerMinuteSchema = z.number().int().positive().max(1_000_000_000)

export const CreateApiKeyRequestSchema = z
  .strictObject({
    tenant: TenantSchema,
    /** A human label, e.g. "ci" or "search-team prod". */
    name: z.string().max(128).optional(),
    scopes: z
      .array(ApiKeyScopeSchema)
      .min(1)
      .refine((s) => new Set(s).size === s.length, 'scopes must not repeat'),
    /** Model names, or ["*"] for all; required (non-empty) with the infer scope. */
    models: z.array(z.union([z.literal(ALL_MODELS), NameSchema])).default([]),
    /** Overrides the gateway's default bucket (RATE_LIMIT_RPS / RATE_LIMIT_BURST). */
    rate_limit: RateLimitSchema.optional(),
    /** Requests per UTC day; unset means no daily quota. */
    daily_quota: z.number().int().positive().max(1_000_000_000).optional(),
    /**
     * Generated-text budget (issue 14): prompt + completion tokens per minute over /v1 and the V2 generate
     * routes, a bucket of this size refilled continuously; unset means no token limit.
     */
    tokens_per_minute: TokensPerMinuteSchema.optional(),
  })
  .refine((k) => !k.scopes.includes('infer') || k.models.length > 0, {
    path: ['models'],
    message: 'a key with the infer scope needs at least one model (or "*")',
  })
export type CreateApiKeyRequest = z.infer<typeof CreateApiKeyRequestSchema>

/** A key as listed: everything but the secret. */
export const ApiKeySchema = z.object({
  id: ApiKeyIdSchema,
  /** The key's first characters, to tell keys apart in a list. */
  prefix: z.string(),
  tenant: TenantSchema,
  name: z.string().nullable(),
  scopes: z.array(ApiKeyScopeSchema),
  models: z.array(z.string()),
  rate_limit: RateLimitSchema.nullable(),
  daily_quota: z.number().int().nullable(),
  tokens_per_minute: z.number().int().nullable(),
  created_at: z.iso.datetime(),
  revoked_at: z.iso.datetime().nullable(),
})
export type ApiKey = z.infer<typeof ApiKeySchema>

export const CreatedApiKeySchema = ApiKeySchema.extend({
  /** The bearer token. Shown once: the gateway keeps only its hash. */
  key: z.string(),
})
export type CreatedApiKey = z.infer<typeof CreatedApiKeySchema>

export const ApiKeyListSchema = z.object({ keys: z.array(ApiKeySchema) })
export type ApiKeyList = z.infer<typeof ApiKeyListSchema>
