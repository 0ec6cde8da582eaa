import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  AppError,
  type InferenceRequest,
  type MergeSpecInput,
  parseMergeSpec,
  type ResponseOutput,
} from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  makeTwinFixture,
  type TwinFixture,
  writeTwinFixture,
} from '../../../test/fixtures/twin-fixture.ts'
import { mergeTensor } from '../merge/merge-tensor.ts'
import { writePackage } from '../package/write-package.ts'
import { loadModel } from './load-model.ts'
import type { ServedModel } from './served-model.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-served-'))
afterAll(() => rm(root, { recursive: true, force: true }))

const cacheOpts = { maxEntries: 4, maxBytes: 1 << 20 }
let fx: TwinFixture
let model: ServedModel

beforeAll(async () => {
  fx = await writeTwinFixture(join(root, 'pkg'))
  model = await loadModel(join(root, 'pkg'), {
    provider: 'cpu',
    threads: 1,
    merge: mergeTensor,
    mergeCache: cacheOpts,
  })
})

/** A deterministic example row. */
function example(i: number, dIn = 6, seq = 1): number[] {
  return Array.from({ length: seq * dIn }, (_, j) => Math.sin(i * 7.1 + j * 1.7) * 2)
}

function request(rows: number[][], parameters?: InferenceRequest['parameters']): InferenceRequest {
  return {
    inputs: [{ name: 'x', shape: [rows.length, 6], datatype: 'FP32', data: rows.flat() }],
    ...(parameters ? { parameters } : {}),
  }
}

async function runOne(req: InferenceRequest, m: ServedModel = model) {
  const prepared = m.prepare(req)
  const [out] = await m.run([prepared])
  return { prepared, out: out?.outputs ?? [] }
}

function output(outs: readonly ResponseOutput[], name: string): number[] {
  const o = outs.find((t) => t.name === name)
  if (!o) throw new Error(`no output ${name}`)
  return o.data as number[]
}

function expectClose(got: readonly number[], want: readonly number[], tol = 1e-5) {
  expect(got).toHaveLength(want.length)
  got.forEach((v, i) => {
    expect(Math.abs(v - (want[i] ?? Number.NaN)), `index ${i}: ${v} vs ${want[i]}`).toBeLessThan(
      tol,
    )
  })
}

function codeOf(f: () => unknown): string {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(AppError)
    return `${(e as AppError).code}: ${(e as AppError).message}`
  }
  throw new Error('expected an error')
}

describe('ServedModel, factored path', () => {
  it('routes each row by the package router (Twin-Merging), matching the reference', async () => {
    const rows = [example(1), example(2), example(3)]
    const { prepared, out } = await runOne(request(rows))
    expect(prepared.path).toBe('factored')
    expect(prepared.variant).toBe('twin')
    const ys = output(out, 'y')
    const ws = output(out, 'expert_weights')
    rows.forEach((x, i) => {
      const w = fx.routerWeights(x)
      expectClose(ws.slice(i * 3, i * 3 + 3), w, 1e-6)
      expectClose(ys.slice(i * 3, i * 3 + 3), fx.reference(x, w).y)
    })
    expect(output(out, 'label')).toEqual(
      rows.map((x, i) => fx.reference(x, ws.slice(i * 3, i * 3 + 3)).label[0]),
    )
  })

  it('honours an explicit mix, top_k and exclude_experts', async () => {
    const x = example(4)
    const explicit = await runOne(request([x], { experts: { alpha: 0.25, gamma: 0.75 } }))
    expectClose(output(explicit.out, 'expert_weights'), [0.25, 0, 0.75], 1e-7)
    expectClose(output(explicit.out, 'y'), fx.reference(x, [0.25, 0, 0.75]).y)

    const top1 = await runOne(request([x], { top_k: 1 }))
    const w1 = fx.routerWeights(x, { topK: 1 })
    expect(w1.filter((v) => v > 0)).toHaveLength(1)
    expectClose(output(top1.out, 'expert_weights'), w1, 1e-6)
    expectClose(output(top1.out, 'y'), fx.reference(x, w1).y)

    const dense = fx.routerWeights(x)
    const favourite = fx.experts[dense.indexOf(Math.max(...dense))] ?? ''
    const excl = await runOne(request([x], { exclude_experts: [favourite] }))
    const mask = fx.experts.map((e) => (e === favourite ? 0 : 1))
    const wx = fx.routerWeights(x, { mask })
    expect(output(excl.out, 'expert_weights')[fx.experts.indexOf(favourite)]).toBeLessThan(1e-7)
    expectClose(output(excl.out, 'expert_weights'), wx, 1e-6)
    expectClose(output(excl.out, 'y'), fx.reference(x, wx).y)
  })

  it('a mixed-weight batch equals the same requests run one by one', async () => {
    const reqs = [
      request([example(10), example(11)]),
      request([example(12)], { experts: { beta: 1 } }),
      request([example(13)], { top_k: 2 }),
      request([example(14), example(15)], { exclude_experts: ['alpha', 'gamma'] }),
      request([example(16)], { experts: { alpha: -0.5, beta: 1.5 } }),
    ]
    const prepared = reqs.map((r) => model.prepare(r))
    expect(new Set(prepared.map((p) => p.batchKey)).size).toBe(1)
    const batched = await model.run(prepared)
    expect(batched).toHaveLength(reqs.length)
    for (const [i, r] of reqs.entries()) {
      const alone = (await runOne(r)).out
      const together = batched[i]?.outputs ?? []
      for (const name of ['y', 'expert_weights', 'label']) {
        expect(together.find((o) => o.name === name)?.shape).toEqual(
          alone.find((o) => o.name === name)?.shape,
        )
        expectClose(output(together, name), output(alone, name), 1e-6)
      }
    }
  })

  it('returns only the requested outputs, in the requested order', async () => {
    const { out } = await runOne({
      ...request([example(1)]),
      outputs: [{ name: 'expert_weights' }, { name: 'label' }],
    })
    expect(out.map((o) => o.name)).toEqual(['expert_weights', 'label'])
    expect(out[1]).toMatchObject({ datatype: 'INT64', shape: [1] })
  })

  it('refuses caller mistakes with the right code', () => {
    expect(codeOf(() => model.prepare(request([example(1)], { experts: { delta: 1 } })))).toMatch(
      /^UNKNOWN_EXPERT: model 'tiny-twin' has no expert 'delta'; its experts are alpha, beta, gamma/,
    )
    expect(
      codeOf(() => model.prepare(request([example(1)], { exclude_experts: ['zeta'] }))),
    ).toMatch(/^UNKNOWN_EXPERT/)
    expect(
      codeOf(() =>
        model.prepare(request([example(1)], { exclude_experts: ['alpha', 'beta', 'gamma'] })),
      ),
    ).toMatch(/^INVALID_REQUEST: exclude_experts removes every expert/)
    expect(codeOf(() => model.prepare(request([example(1)], { variant: 'ties' })))).toMatch(
      /^NOT_FOUND: model 'tiny-twin' has no variant 'ties'; its variants are shared, uniform/,
    )
    expect(
      codeOf(() => model.prepare({ ...request([example(1)]), outputs: [{ name: 'z' }] })),
    ).toMatch(/^INVALID_REQUEST: unknown output 'z'/)
    expect(codeOf(() => model.prepare(request([example(1)], { top_k: 0 })))).toMatch(
      /^INVALID_REQUEST/,
    )
  })
})

describe('ServedModel, static variants', () => {
  it('serves variants from their own graphs', async () => {
    const x = example(5)
    const shared = await runOne(request([x], { variant: 'shared' }))
    expect(shared.prepared).toMatchObject({ path: 'static', variant: 'shared' })
    expectClose(output(shared.out, 'y'), fx.reference(x, [0, 0, 0]).y)
    expect(output(shared.out, 'expert_weights')).toEqual([0, 0, 0])
    const uniform = await runOne(request([x], { variant: 'uniform' }))
    expectClose(output(uniform.out, 'y'), fx.reference(x, fx.uniformWeights()).y)
    expect(shared.prepared.batchKey).not.toBe(uniform.prepared.batchKey)
  })

  it('serves `shared` from the twin graph at zero weights when the package has no shared file', async () => {
    await writeTwinFixture(join(root, 'no-shared'), { omitSharedVariant: true })
    const m = await loadModel(join(root, 'no-shared'), { provider: 'cpu', mergeCache: cacheOpts })
    expect(m.variantNames).toEqual(['shared', 'uniform'])
    const x = example(6)
    const { prepared, out } = await runOne(request([x], { variant: 'shared' }), m)
    expect(prepared).toMatchObject({ path: 'factored', variant: 'shared' })
    const direct = await runOne(request([x], { experts: { alpha: 0 } }), m)
    expect(output(out, 'y')).toEqual(output(direct.out, 'y'))
    expectClose(output(out, 'y'), fx.reference(x, [0, 0, 0]).y)
  })
})

describe('ServedModel, materialised merges', () => {
  const x = example(7)
  const mix = { alpha: 0.3, beta: 0.5, gamma: 0.2 }

  it('agrees with the factored path for linear mixes', async () => {
    const factored = await runOne(request([x], { experts: mix }))
    for (const method of ['task_arithmetic', 'linear'] as const) {
      const mat = await runOne(request([x], { experts: mix, merge_method: method }))
      expect(mat.prepared).toMatchObject({ path: 'materialized', variant: 'twin' })
      expectClose(output(mat.out, 'y'), output(factored.out, 'y'), 1e-5)
      expectClose(output(mat.out, 'expert_weights'), [0.3, 0.5, 0.2], 1e-7)
    }
  })

  it('runs a nonlinear merge exactly as the merge engine computes it on the experts', async () => {
    const params = { merge_method: 'ties', density: 0.5, majority_sign_method: 'total' } as const
    const mat = await runOne(request([x], { experts: { alpha: 1, gamma: 1 }, ...params }))
    const spec = parseMergeSpec({
      method: 'ties',
      density: 0.5,
      majority_sign_method: 'total',
      experts: { alpha: { weight: 1 }, gamma: { weight: 1 } },
    } satisfies MergeSpecInput)
    const merged = new Map(
      fx.exclusive.map((t) => [
        t.name,
        mergeTensor(spec, {
          base: t.shared,
          experts: [t.expert(0), t.expert(2)],
          names: ['alpha', 'gamma'],
          shape: t.shape,
          tensorName: t.name,
        }),
      ]),
    )
    expectClose(output(mat.out, 'y'), fx.forwardWith(x, merged).y, 1e-4)
    const linear = await runOne(request([x], { experts: { alpha: 1, gamma: 1 } }))
    expect(
      Math.max(
        ...output(mat.out, 'y').map((v, i) => Math.abs(v - (output(linear.out, 'y')[i] ?? 0))),
      ),
    ).toBeGreaterThan(1e-3)
  })

  it('caches merges per canonical recipe and batches only identical recipes together', async () => {
    const before = model.cacheStats()
    const a = model.prepare(
      request([x], {
        experts: { beta: 0.5, alpha: 0.5 },
        merge_method: 'dare_ties',
        density: 0.5,
        seed: 1,
      }),
    )
    const b = model.prepare(
      request([x], {
        experts: { alpha: 0.5, beta: 0.5 },
        merge_method: 'dare_ties',
        seed: 1,
        density: 0.5,
      }),
    )
    const c = model.prepare(
      request([x], {
        experts: { alpha: 0.5, beta: 0.5 },
        merge_method: 'dare_ties',
        density: 0.5,
        seed: 2,
      }),
    )
    expect(a.batchKey).toBe(b.batchKey)
    expect(a.batchKey).not.toBe(c.batchKey)
    const [ra, rb] = await model.run([a, b])
    expect(output(ra?.outputs ?? [], 'y')).toEqual(output(rb?.outputs ?? [], 'y'))
    await model.run([a])
    const after = model.cacheStats()
    expect(after.misses - before.misses).toBe(1)
    expect(after.hits - before.hits).toBe(1)
  })

  it('refuses merge_method when the package lacks the factors, but still serves the rest', async () => {
    const broken = makeTwinFixture()
    await writePackage(
      join(root, 'no-factors'),
      {
        ...broken.manifest,
        exclusive: [
          ...broken.manifest.exclusive,
          { name: 'ghost.weight', kind: 'vector', shape: [4], relError: [0, 0, 0] },
        ],
      },
      broken.files,
    )
    const m = await loadModel(join(root, 'no-factors'), {
      provider: 'cpu',
      merge: mergeTensor,
      mergeCache: cacheOpts,
    })
    expect(m.metadata().parameters?.merge_paths).toEqual(['factored', 'static'])
    expect(
      codeOf(() => m.prepare(request([x], { experts: { alpha: 1 }, merge_method: 'ties' }))),
    ).toMatch(
      /^INVALID_MODEL: model 'tiny-twin' cannot run merge_method: .*no initializer 'ghost.weight'/,
    )
    expect((await runOne(request([x]), m)).out).toHaveLength(3)
  })
})

describe('rank-0 exclusive matrices', () => {
  it('have no factors by convention, and leave the materialised path available', async () => {
    const f = makeTwinFixture()
    await writePackage(
      join(root, 'rank0'),
      {
        ...f.manifest,
        exclusive: [
          ...f.manifest.exclusive,
          {
            name: 'router.weight',
            kind: 'matrix',
            shape: [6, 3],
            ranks: [0, 0, 0],
            relError: [1, 1, 1],
          },
        ],
      },
      f.files,
    )
    const m = await loadModel(join(root, 'rank0'), {
      provider: 'cpu',
      merge: mergeTensor,
      mergeCache: cacheOpts,
    })
    expect(m.metadata().parameters?.merge_paths).toContain('materialized')
    const x = example(8)
    const mat = await runOne(
      request([x], { experts: { beta: 1 }, merge_method: 'task_arithmetic' }),
      m,
    )
    expectClose(output(mat.out, 'y'), f.reference(x, [0, 1, 0]).y)
  })
})

describe('failure isolation', () => {
  it('a request the graph refuses fails alone, as a 4xx naming the cause', async () => {
    await writeTwinFixture(join(root, 'masked'), { sequence: true, withMask: true, name: 'masked' })
    const m = await loadModel(join(root, 'masked'), { provider: 'cpu', mergeCache: cacheOpts })
    const req = (seq: number, maskSeq: number): InferenceRequest => ({
      inputs: [
        { name: 'x', shape: [1, seq, 6], datatype: 'FP32', data: example(1, 6, seq) },
        {
          name: 'mask',
          shape: [1, maskSeq],
          datatype: 'FP32',
          data: Array.from({ length: maskSeq }, () => 1),
        },
      ],
    })
    const good = m.prepare(req(2, 2))
    // Every declared check passes: the mismatch is only between the two inputs, inside the graph.
    const bad = m.prepare(req(2, 3))
    const [alone] = await m.runIsolated([bad])
    expect(alone).toBeInstanceOf(AppError)
    expect((alone as AppError).code).toBe('INVALID_REQUEST')
    expect((alone as AppError).message).toMatch(/model 'masked' cannot run this input: /)
    // Coalesced with a good request (forced into one batch), only the bad one fails.
    const results = await m.runIsolated([good, { ...bad, batchKey: good.batchKey }])
    expect(results[0]).toEqual((await m.run([good]))[0])
    expect(results[1]).toBeInstanceOf(AppError)
  })
})

describe('fixed batch dimension', () => {
  it('a model declaring batch 1 never coalesces requests', async () => {
    const f = makeTwinFixture({ name: 'fixed-batch' })
    await writePackage(
      join(root, 'fixed'),
      { ...f.manifest, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 6] }] },
      f.files,
    )
    const m = await loadModel(join(root, 'fixed'), { provider: 'cpu', mergeCache: cacheOpts })
    const a = m.prepare(request([example(1)]))
    const b = m.prepare(request([example(2)]))
    expect(a.batchKey).not.toBe(b.batchKey)
    expect(model.prepare(request([example(1)])).batchKey).toBe(
      model.prepare(request([example(2)])).batchKey,
    )
    expect(codeOf(() => m.prepare(request([example(1), example(2)])))).toMatch(/shape \[2,6\]/)
  })
})

describe('loading', () => {
  it('refuses a package whose twin graph breaks the contract', async () => {
    const f = makeTwinFixture()
    await writePackage(join(root, 'not-twin'), f.manifest, {
      ...f.files,
      'model.onnx': f.files['variants/shared.onnx'] as Uint8Array,
    })
    await expect(
      loadModel(join(root, 'not-twin'), { provider: 'cpu', mergeCache: cacheOpts }),
    ).rejects.toThrow(
      /twin graph’s inputs has \[x\], the manifest and twin-graph contract say \[x, mix_weights, use_router, expert_mask, top_k\]/,
    )
  })

  it('keys batches by the non-batch input shapes', async () => {
    await writeTwinFixture(join(root, 'seq'), { sequence: true, name: 'tiny-seq' })
    const sfx = makeTwinFixture({ sequence: true })
    const m = await loadModel(join(root, 'seq'), { provider: 'cpu', mergeCache: cacheOpts })
    const req = (seq: number, i: number): InferenceRequest => ({
      inputs: [{ name: 'x', shape: [1, seq, 6], datatype: 'FP32', data: example(i, 6, seq) }],
    })
    const p2 = m.prepare(req(2, 1))
    const p2b = m.prepare(req(2, 2))
    const p3 = m.prepare(req(3, 3))
    expect(p2.batchKey).toBe(p2b.batchKey)
    expect(p2.batchKey).not.toBe(p3.batchKey)
    const [o1, o2] = await m.run([p2, p2b])
    for (const [i, out] of [o1?.outputs, o2?.outputs].entries()) {
      const xi = example(i + 1, 6, 2)
      expect(out?.find((o) => o.name === 'y')?.shape).toEqual([1, 2, 3])
      expectClose(output(out ?? [], 'y'), sfx.reference(xi, sfx.routerWeights(xi)).y)
    }
  })
})

describe('sessions in threads (#17)', () => {
  it('answer as the same sessions on the event loop do, every path; a closed model fails requests as INTERNAL', async () => {
    const dir = join(root, 'pkg')
    const opts = { provider: 'cpu' as const, threads: 1, merge: mergeTensor, mergeCache: cacheOpts }
    const inline = await loadModel(dir, { ...opts, sessionThreads: false })
    const threaded = await loadModel(dir, { ...opts, sessionThreads: true })
    const mix = Object.fromEntries(fx.manifest.experts.map((e, i) => [e.name, 0.2 + 0.1 * i]))
    const cases: InferenceRequest['parameters'][] = [
      { experts: mix },
      { variant: 'shared' },
      { experts: mix, merge_method: 'task_arithmetic' },
      {},
    ]
    for (const parameters of cases) {
      const req = request([example(1), example(2)], parameters)
      const a = await runOne(req, inline)
      const b = await runOne(req, threaded)
      expect(b.prepared.path).toBe(a.prepared.path)
      // The same graph on the same inputs: the same numbers, exactly.
      for (const o of a.out) expect(output(b.out, o.name)).toEqual(o.data)
    }
    await threaded.close()
    const [failed] = await threaded.runIsolated([threaded.prepare(request([example(3)]))])
    expect(failed).toBeInstanceOf(AppError)
    expect((failed as AppError).code).toBe('INTERNAL')
    await inline.close()
  })
})
