/**
 * The likelihood graph's session opens only where prompts are scored (issue 14): a package routed by its prompt's
 * likelihood (zoo/lm/package) served without `--generation` keeps one session, and the memory check counts the
 * second session only where it opens. Real onnxruntime, the real package.
 */
import { join } from 'node:path'
import { AppError } from '@twinserve/shared'
import { afterAll, describe, expect, it } from 'vitest'
import { RunnerConfigSchema } from '../config.ts'
import { readManifest } from '../package/load-package.ts'
import { createLogger } from '../server/logger.ts'
import { ModelRepository } from '../server/model-repository.ts'
import { estimateLoadedBytes } from '../server/package-location.ts'
import { type Runner, startRunner } from '../server/runner.ts'
import { loadModel } from './load-model.ts'

const LM = join(import.meta.dirname, '../../../zoo/lm')
const PACKAGE = join(LM, 'package')
const cacheOpts = { maxEntries: 1, maxBytes: 1 << 20 }
const logger = createLogger({ sink: () => undefined })
let runner: Runner | undefined
afterAll(() => runner?.shutdown('test done'))

describe('likelihood session only for generating models (#14)', () => {
  it('loadModel opens it by default and not when told the model does not generate', async () => {
    const opened = await loadModel(PACKAGE, { provider: 'cpu', threads: 1, mergeCache: cacheOpts })
    const skipped = await loadModel(PACKAGE, {
      provider: 'cpu',
      threads: 1,
      mergeCache: cacheOpts,
      likelihoodSession: (name) => name !== 'lm-twin',
    })
    try {
      expect(opened.manifest.router.promptLikelihood).toBeDefined()
      expect(opened.likelihoodSessionOpen).toBe(true)
      expect(opened.likelihoodScoring).toBe('likelihood graph, grouped (19 corrections per expert)')
      expect(skipped.likelihoodSessionOpen).toBe(false)
      expect(skipped.likelihoodScoring).toMatch(/not opened: this runner does not generate/)
    } finally {
      await Promise.all([opened.close(), skipped.close()])
    }
  })

  it('the estimate counts the second session only where it opens, and a hot load is checked against that', async () => {
    const manifest = await readManifest(PACKAGE)
    const withSession = await estimateLoadedBytes(PACKAGE, manifest)
    const without = await estimateLoadedBytes(PACKAGE, manifest, { likelihoodSession: false })
    expect(without).toBeLessThan(withSession)
    // A limit between the two estimates: a repository whose loader skips the session fits the package; one whose
    // loader opens it refuses the load before opening anything.
    const limitMb = (without + withSession) / 2 / (1024 * 1024)
    const repository = (likelihoodSession: boolean) =>
      new ModelRepository({
        root: LM,
        memoryLimitMb: limitMb,
        open: (dir) =>
          loadModel(dir, {
            provider: 'cpu',
            threads: 1,
            mergeCache: cacheOpts,
            likelihoodSession: () => likelihoodSession,
          }),
        likelihoodSession: () => likelihoodSession,
        logger,
      })
    const refused = await repository(true)
      .load('lm-twin', 'package')
      .catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(AppError)
    expect((refused as AppError).code).toBe('INSUFFICIENT_MEMORY')
    const fits = repository(false)
    await expect(fits.load('lm-twin', 'package')).resolves.toMatchObject({ state: 'READY' })
    expect(fits.current.get('lm-twin')?.likelihoodSessionOpen).toBe(false)
    await fits.close()
  })

  it('a runner opens it for the model it generates with only', async () => {
    runner = await startRunner(
      RunnerConfigSchema.parse({
        packages: [PACKAGE],
        port: 0,
        insecureLocal: true,
        provider: 'cpu',
        threads: 1,
        logLevel: 'error',
      }),
      { logger },
    )
    expect(runner.models.get('lm-twin')?.likelihoodSessionOpen).toBe(false)
  })
})
