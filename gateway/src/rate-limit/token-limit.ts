/**
 * The generation routes' token limit (issue 14): a key with `tokens_per_minute` is refused (429 RATE_LIMITED
 * with Retry-After) while its token budget is spent, and each finished answer's prompt + completion tokens are
 * charged to it afterwards (token-budget.ts says how that counts). The budget lives in the key's RateLimiter
 * object beside its request bucket, so it is exact across isolates. Keys without the limit cost nothing here.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { Context } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { errorFields, log } from '../util/log.ts'

export const TOKENS_REMAINING_HEADER = 'x-ratelimit-remaining-tokens'

/** Throws 429 when the caller's token budget is spent; the tokens left (undefined: no token limit). */
export async function requireTokenBudget(c: Context<AppEnv>): Promise<number | undefined> {
  const principal = c.get('principal')
  const tpm = principal.tokens_per_minute
  if (tpm === null) return undefined
  const check = await c.env.RATE_LIMITER.getByName(principal.key_id).checkTokens(tpm)
  if (!check.allowed) {
    c.get('requestLog').reject('token_rate_limited')
    throw new AppError(
      'RATE_LIMITED',
      `token rate limit of ${tpm} tokens/min (prompt + completion) used up; retry in ${check.retryAfterS} s`,
      { retryAfter: check.retryAfterS },
    )
  }
  return check.remaining
}

/**
 * Charges `tokens` to the caller's token budget, off the response path where there is an execution context.
 * Nothing to do for keys without the limit.
 */
export function chargeTokens(c: Context<AppEnv>, tokens: number): void {
  const principal = c.get('principal')
  const tpm = principal.tokens_per_minute
  if (tpm === null || tokens <= 0) return
  const work = c.env.RATE_LIMITER.getByName(principal.key_id)
    .chargeTokens(tpm, tokens)
    .then(
      () => undefined,
      (err: unknown) =>
        log('warn', 'token_charge_failed', {
          request_id: c.get('requestId'),
          key_id: principal.key_id,
          tokens,
          ...errorFields(err),
        }),
    )
  try {
    c.executionCtx.waitUntil(work)
  } catch {
    // No execution context (a direct app.request in a unit test): the charge runs on its own.
  }
}
