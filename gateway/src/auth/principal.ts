import type { ApiKeyScope, RateLimit } from '@twinserve/shared'

/** Who is calling: an API key from D1, or the bootstrap admin secret (`key_id` "bootstrap"). */
export interface Principal {
  key_id: string
  tenant: string
  scopes: readonly ApiKeyScope[]
  /** Model names, or "*" for all. */
  models: readonly string[]
  rate_limit: RateLimit | null
  daily_quota: number | null
  /** Prompt + completion tokens per minute on the generation routes; null: no token limit. */
  tokens_per_minute: number | null
}
