/**
 * The Twinserve gateway Worker: the Hono app, and the Durable Object classes wrangler.toml binds.
 * @module
 */
export { app as default } from './app.ts'
export { ExperimentBandit } from './experiments/index.ts'
export { RateLimiter } from './rate-limit/index.ts'
export { RunnerRegistry } from './routing/index.ts'
