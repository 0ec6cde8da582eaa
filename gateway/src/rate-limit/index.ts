export { RATE_LIMIT_REMAINING_HEADER, rateLimit } from './rate-limit.ts'
export { type RateDecision, RateLimiter } from './rate-limiter.ts'
