export { RATE_LIMIT_REMAINING_HEADER, rateLimit } from './rate-limit.ts'
