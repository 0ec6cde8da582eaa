/**
 * Triton's repository extension on a real runner (issue #19): `load` swaps a package in as a model's new version,
 * `unload` stops serving it, and every caller mistake (loading off, a path outside --repository-root, a symlink
 * out of it, another model's package, a malformed body, a version that does not fit in --memory-limit-mb) is a
 * 4xx/507 naming the problem that leaves what is served unchanged. The swap under concurrent load is
 * test/e2e/runner-hot-swap.test.ts.
 */
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { InferenceResponseSchema, RepositoryLoadResponseSchema } from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeTwinFixture } from '../../../test/fixtures/twin-fixture.ts'
import { promSample } from '../../../test/support/prometheus-text.ts'
import { type RunnerConfigInput, RunnerConfigSchema } from '../config.ts'
import { createLogger } from './logger.ts'
import { type Runner, startRunner } from './runner.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-repository-'))
const repo = join(root, 'repo')
const runners: Runner[] = []
let runner: Runner
let v1 = ''

async function start(overrides: Partial<RunnerConfigInput>): Promise<Runner> {
  const r = await startRunner(
    RunnerConfigSchema.parse({
      packages: [join(repo, 'v1')],
      port: 0,
      insecureLocal: true,
      provider: 'cpu',
      threads: 1,
      ...overrides,
    }),
    { logger: createLogger({ sink: () => undefined }) },
  )
  runners.push(r)
  return r
}

beforeAll(async () => {
  await mkdir(repo, { recursive: true })
  await writeTwinFixture(join(repo, 'v1'), { seed: 1 })
  // The same model built differently: other weights, another rank.
  await writeTwinFixture(join(repo, 'v2'), { seed: 2, rank: 3 })
  await writeTwinFixture(join(repo, 'other'), { name: 'other-twin' })
  // About 12 MiB of weights in three graphs: with v1 held, more than --memory-limit-mb 64 allows (a tiny package
  // is estimated at about 25 MiB: three sessions), where v2 fits.
  await writeTwinFixture(join(repo, 'big'), { dIn: 8192, hidden: 128 })
  await writeTwinFixture(join(root, 'outside'), { seed: 3 })
  await symlink(join(root, 'outside'), join(repo, 'escape'))
  runner = await start({ repositoryRoot: repo, memoryLimitMb: 64 })
  v1 = runner.models.get('tiny-twin')?.version ?? ''
})
afterAll(async () => {
  for (const r of runners) await r.shutdown('test done')
  await rm(root, { recursive: true, force: true })
})

async function post(path: string, body?: unknown, on: Runner = runner) {
  const res = await fetch(`${on.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  })
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

const load = (pkg: string, model = 'tiny-twin', on?: Runner) =>
  post(`/v2/repository/models/${model}/load`, { parameters: { package: pkg } }, on)
const index = async () => (await post('/v2/repository/index')).json
const x = [0.5, -1, 2, 0.25, 1.5, -0.75]
async function infer() {
  const r = await post('/v2/models/tiny-twin/infer', {
    inputs: [{ name: 'x', shape: [1, 6], datatype: 'FP32', data: x }],
    outputs: [{ name: 'y' }],
  })
  return r.status === 200 ? InferenceResponseSchema.parse(r.json) : r
}

describe('POST /v2/repository/models/{m}/load refuses, naming the problem, and nothing changes', () => {
  it.each([
    [
      'a directory outside the root',
      join(root, 'outside'),
      403,
      'FORBIDDEN',
      /outside the repository root/,
    ],
    [
      'a relative path out of the root',
      '../outside',
      403,
      'FORBIDDEN',
      /outside the repository root/,
    ],
    ['a symlink out of the root', 'escape', 403, 'FORBIDDEN', /outside the repository root/],
    ['a directory that does not exist', 'v9', 404, 'NOT_FOUND', /'v9' does not exist/],
    [
      'another model’s package',
      'other',
      400,
      'INVALID_REQUEST',
      /is model 'other-twin', not 'tiny-twin'/,
    ],
    [
      'a version that does not fit',
      'big',
      507,
      'INSUFFICIENT_MEMORY',
      /needs about \d+ MiB.*--memory-limit-mb 64/,
    ],
  ])('%s', async (_what, pkg, status, code, message) => {
    const r = await load(pkg)
    expect(r.status, JSON.stringify(r.json)).toBe(status)
    expect(r.json.code).toBe(code)
    expect(String(r.json.error)).toMatch(message)
    expect(await index()).toEqual([{ name: 'tiny-twin', version: v1, state: 'READY' }])
    expect((await infer()) as { model_version?: string }).toMatchObject({ model_version: v1 })
  })

  it('malformed bodies: 400 naming the field', async () => {
    const missing = await post('/v2/repository/models/tiny-twin/load', {})
    expect(missing.status).toBe(400)
    expect(String(missing.json.error)).toMatch(/parameters/)
    const typo = await post('/v2/repository/models/tiny-twin/load', {
      parameters: { package: 'v2', config: '{}' },
    })
    expect(typo.status).toBe(400)
    expect(String(typo.json.error)).toMatch(/config/)
    const empty = await post('/v2/repository/models/tiny-twin/load')
    expect(empty.status).toBe(400)
    expect(String(empty.json.error)).toMatch(/load needs a body \{"parameters": \{"package"/)
    const notJson = await post('/v2/repository/models/tiny-twin/load', 'v2')
    expect(notJson.status).toBe(400)
    expect(String(notJson.json.error)).toMatch(/not valid JSON/)
  })

  it('is off without --repository-root: 403 saying how to turn it on', async () => {
    const plain = await start({})
    const r = await load('v2', 'tiny-twin', plain)
    expect(r.status).toBe(403)
    expect(String(r.json.error)).toMatch(/hot loading is off.*--repository-root/)
  })
})

describe('hot swap and unload', () => {
  it('swaps in a new version: new requests answer from it, the idle old one is released', async () => {
    const before = await infer()
    const r = await load('v2')
    expect(r.status, JSON.stringify(r.json)).toBe(200)
    const answer = RepositoryLoadResponseSchema.parse(r.json)
    expect(answer).toMatchObject({ name: 'tiny-twin', state: 'READY', previous_version: v1 })
    expect(answer.version).not.toBe(v1)
    const after = await infer()
    expect(after).toMatchObject({ model_version: answer.version })
    // Other weights: other numbers.
    expect((after as { outputs: { data?: unknown[] }[] }).outputs[0]?.data).not.toEqual(
      (before as { outputs: { data?: unknown[] }[] }).outputs[0]?.data,
    )
    expect(await index()).toEqual([{ name: 'tiny-twin', version: answer.version, state: 'READY' }])
    const metrics = await (await fetch(`${runner.url}/metrics`)).text()
    expect(promSample(metrics, 'twinserve_runner_model_versions', { model: 'tiny-twin' })).toBe(1)
    // Loading the version already served changes nothing.
    const again = await load('v2')
    expect(again.json).toMatchObject({ version: answer.version, previous_version: answer.version })
  })

  it('unloads: 404 for new requests, then loads it back as a new model', async () => {
    const r = await post('/v2/repository/models/tiny-twin/unload')
    expect(r.status).toBe(200)
    expect(r.json).toMatchObject({ name: 'tiny-twin', state: 'UNAVAILABLE' })
    expect(await infer()).toMatchObject({ status: 404 })
    expect(await index()).toEqual([])
    const twice = await post('/v2/repository/models/tiny-twin/unload', {
      parameters: { unload_dependents: false },
    })
    expect(twice.status).toBe(404)
    expect(String(twice.json.error)).toMatch(/not served here/)
    expect((await load('v1')).status).toBe(200)
    expect(await infer()).toMatchObject({ model_version: v1 })
  })
})
