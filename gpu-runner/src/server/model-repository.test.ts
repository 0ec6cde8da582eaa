/**
 * The model repository's leases (issue #19), deterministically, on real sessions: a request that holds the old
 * version when a new one is loaded still runs on the old version, which is released only when that request lets
 * go; loads run one at a time; a load that does not fit in the OS's available memory is refused before it starts.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AppError } from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type TwinFixture, writeTwinFixture } from '../../../test/fixtures/twin-fixture.ts'
import { loadModel } from '../model/load-model.ts'
import { createLogger } from './logger.ts'
import { ModelRepository } from './model-repository.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-model-repo-'))
const repo = join(root, 'repo')
let fx1: TwinFixture
const open = (dir: string) =>
  loadModel(dir, { provider: 'cpu', threads: 1, mergeCache: { maxEntries: 1, maxBytes: 1 << 20 } })
const logger = createLogger({ sink: () => undefined })

beforeAll(async () => {
  await mkdir(repo)
  fx1 = await writeTwinFixture(join(repo, 'v1'), { seed: 1 })
  await writeTwinFixture(join(repo, 'v2'), { seed: 2, rank: 3 })
})
afterAll(() => rm(root, { recursive: true, force: true }))

async function repository(extra: Partial<ConstructorParameters<typeof ModelRepository>[0]> = {}) {
  const r = new ModelRepository({ root: repo, open, logger, ...extra })
  const dir = join(repo, 'v1')
  await r.add(await open(dir), dir)
  return r
}

const x = [0.5, -1, 2, 0.25, 1.5, -0.75]
const request = {
  inputs: [{ name: 'x', shape: [1, 6], datatype: 'FP32' as const, data: x }],
  outputs: [{ name: 'y' }],
}

describe('ModelRepository', () => {
  it('a request holding the old version runs on it after the swap; the old version goes when it lets go', async () => {
    let changes = 0
    const r = await repository({ onChange: () => changes++ })
    const old = r.current.get('tiny-twin')
    if (!old) throw new Error('no model')
    r.hold(old)
    const prepared = old.prepare(request)
    const swapped = await r.load('tiny-twin', 'v2')
    expect(swapped).toMatchObject({ previous_version: old.version, previous_in_flight: 1 })
    expect(changes).toBe(1)
    const fresh = r.current.get('tiny-twin')
    expect(fresh?.version).toBe(swapped.version)
    expect(r.loaded().map((v) => [v.model.version, v.current, v.inFlight])).toEqual([
      [old.version, false, 1],
      [swapped.version, true, 0],
    ])
    // The batch of a request prepared for the old version runs on the old version's sessions.
    const on = r.instance('tiny-twin', prepared.version)
    expect(on).toBe(old)
    const [result] = (await on?.runIsolated([prepared])) ?? []
    if (!result || result instanceof AppError) throw new Error('the old version failed')
    const y = result.outputs[0]?.data as number[]
    fx1.reference(x, fx1.routerWeights(x)).y.forEach((v, i) => {
      expect(y[i]).toBeCloseTo(v, 4)
    })
    r.release(old)
    expect(r.loaded().map((v) => v.model.version)).toEqual([swapped.version])
    expect(r.instance('tiny-twin', old.version)).toBeUndefined()
    // Released: its sessions are closed.
    await r.released()
    const [after] = await old.runIsolated([old.prepare(request)])
    expect(after).toBeInstanceOf(AppError)
    await r.close()
  })

  it('runs loads one at a time, each to completion', async () => {
    const r = await repository()
    const v1 = r.current.get('tiny-twin')?.version
    const [a, b] = await Promise.all([r.load('tiny-twin', 'v2'), r.load('tiny-twin', 'v1')])
    expect(a.previous_version).toBe(v1)
    expect(b.previous_version).toBe(a.version)
    expect(b.version).toBe(v1)
    expect(r.loaded()).toHaveLength(1)
    await r.close()
  })

  it('refuses a version the OS has no memory for, before loading anything', async () => {
    let opened = 0
    const counting = new ModelRepository({
      root: repo,
      open: (dir) => {
        opened++
        return open(dir)
      },
      logger,
      available: () => 1000,
    })
    const err = await counting.load('tiny-twin', 'v2').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AppError)
    expect((err as AppError).code).toBe('INSUFFICIENT_MEMORY')
    expect((err as AppError).message).toMatch(
      /needs about \d+ MiB; the machine has 1 MiB available/,
    )
    expect(opened).toBe(0)
    expect(counting.loaded()).toEqual([])
  })
})
