/**
 * The runner's OpenAPI document names exactly the routes its app serves (app.routes of a real createApp), and
 * every $ref in it resolves: a route added to app.ts without a document entry, or documented and gone, fails.
 */
import { describe, expect, it } from 'vitest'
import { MergeQuota } from '../model/merge-quota.ts'
import type { PreparedRequest, RunResult } from '../model/served-model.ts'
import { createApp } from './app.ts'
import { InferenceStatistics } from './inference-stats.ts'
import { createLogger } from './logger.ts'
import { createMetrics } from './metrics.ts'
import { ModelRepository } from './model-repository.ts'
import { buildRunnerOpenApiDocument } from './openapi-document.ts'
import { ReplayGuard } from './replay-guard.ts'
import { Scheduler } from './scheduler.ts'

/** A runner app with no models: its routes are registered all the same. */
function emptyApp() {
  const scheduler = new Scheduler<PreparedRequest, RunResult>(() => Promise.resolve([]), {
    maxBatchSize: 1,
    maxBatchWaitMs: 0,
    maxQueue: 1,
    concurrency: 1,
  })
  const metrics = createMetrics({
    queueDepth: () => 0,
    inFlight: () => 0,
    capacity: 1,
    draining: () => false,
    cache: () => [],
  })
  const logger = createLogger({ sink: () => undefined })
  const repository = new ModelRepository({ open: () => Promise.reject(new Error('none')), logger })
  return createApp({
    models: repository.current,
    repository,
    generators: new Map(),
    scheduler,
    metrics,
    stats: new InferenceStatistics(),
    maxBatchSize: 1,
    logger,
    provider: 'cpu',
    signingSecret: null,
    maxBodyBytes: 1024,
    bodyTimeoutMs: 1000,
    replay: new ReplayGuard({ windowS: 300 }),
    mergeQuota: new MergeQuota(0),
    requestTimeoutMs: 1000,
    ready: () => true,
  })
}

describe('runner OpenAPI document', () => {
  const doc = buildRunnerOpenApiDocument('0.0.0-test') as {
    openapi: string
    paths: Record<string, Record<string, unknown>>
    components: { schemas: Record<string, unknown> }
  }

  it('documents every route the app serves, and nothing else', () => {
    // Catch-alls (`ALL`), if any, answer errors only and are not API surface.
    const served = emptyApp()
      .routes.filter((r) => r.method !== 'ALL')
      .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, '{$1}')}`)
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m} ${path}`),
    )
    expect(new Set(documented)).toEqual(new Set(served))
    // health ×2, metrics, /v2, stats of all, repository index, load, unload, 7 per-model routes × (unversioned,
    // versioned), 3 OpenAI-compatible routes
    expect(documented.length).toBe(25)
  })

  it('is OpenAPI 3.1 and every $ref resolves to a component', () => {
    expect(doc.openapi).toBe('3.1.0')
    const refs = JSON.stringify(doc).match(/"\$ref":"#\/components\/schemas\/[^"]+"/g) ?? []
    expect(refs.length).toBeGreaterThan(5)
    for (const r of refs) {
      const id = r.replace(/^"\$ref":"#\/components\/schemas\//, '').replace(/"$/, '')
      expect(doc.components.schemas, r).toHaveProperty([id])
    }
  })
})
