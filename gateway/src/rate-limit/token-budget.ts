/**
 * A key's generated-text budget (issue 14) as pure functions: a bucket of `tokensPerMinute` tokens (one
 * minute's worth), refilled continuously at tokensPerMinute / 60 per second.
 *
 * How it is counted: a generation call is let through while the bucket holds more than zero tokens; when the
 * answer is complete, its prompt + completion tokens (the runner's `usage`) are taken out, and the level may go
 * below zero. A debt delays the key's next calls until the refill has paid it off (Retry-After says when), so
 * over any window the key generates at most its rate plus one bucket plus what calls already running when the
 * bucket emptied go on to generate. The size of an answer is not known before it is generated, which is why
 * the charge comes after and the check before.
 * @module
 */

export interface TokenBudgetState {
  /** Tokens left; below zero after an answer larger than what was left (a debt). */
  level: number
  /** When `level` was last computed (ms since epoch). */
  updatedMs: number
}

export type TokenCheck =
  | { allowed: true; remaining: number }
  | { allowed: false; retryAfterS: number; remaining: number }

/** The level at `nowMs`: refilled since the last update, never above one minute's worth. */
export function refilled(
  prev: TokenBudgetState | undefined,
  tokensPerMinute: number,
  nowMs: number,
): TokenBudgetState {
  if (!prev) return { level: tokensPerMinute, updatedMs: nowMs }
  // A clock that steps back must not mint tokens.
  const elapsedMs = Math.max(0, nowMs - prev.updatedMs)
  const level = Math.min(tokensPerMinute, prev.level + (elapsedMs * tokensPerMinute) / 60_000)
  return { level, updatedMs: Math.max(nowMs, prev.updatedMs) }
}

/** Whether a call may start now; when not, the whole seconds until the level is above zero again. */
export function checkTokens(state: TokenBudgetState, tokensPerMinute: number): TokenCheck {
  const remaining = Math.floor(Math.max(0, state.level))
  if (state.level > 0) return { allowed: true, remaining }
  const perS = tokensPerMinute / 60
  // Strictly above zero: one token's worth past the debt.
  return {
    allowed: false,
    retryAfterS: Math.max(1, Math.ceil((1 - state.level) / perS)),
    remaining,
  }
}

/** The state after an answer of `tokens` tokens (prompt + completion). */
export function chargeTokens(state: TokenBudgetState, tokens: number): TokenBudgetState {
  return { level: state.level - Math.max(0, tokens), updatedMs: state.updatedMs }
}
