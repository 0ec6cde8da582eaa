/**
 * The Twinserve gateway Worker: the Hono app, and the Durable Object classes wrangler.toml binds.
 * @module
 */
import { app } from './app.ts'

export { ExperimentBandit } from './durable-objects/experiment-bandit.ts'
export { RateLimiter } from './durable-objects/rate-limiter.ts'
export { RunnerRegistry } from './durable-objects/runner-registry.ts'

export default app
