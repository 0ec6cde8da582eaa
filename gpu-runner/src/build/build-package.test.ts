import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SHARED_VARIANT } from '@twinserve/shared'
import { afterAll, describe, expect, it } from 'vitest'
import { MLP_SIZES, transformerModel, writeBuildFixture } from '../../test-support/test-models.ts'
import { expertDelta, readExclusiveFactors } from '../model/materialize.ts'
import { floatTensor } from '../onnx/graph-builder.ts'
import { onnx } from '../onnx/proto.ts'
import { loadPackage } from '../package/load-package.ts'
import { type BuildOptions, buildPackage } from './build-package.ts'
import { decodeModel, readOnnxBytes, tensorToFloat32 } from './import/read-onnx.ts'
import { createReporter } from './pipeline/progress.ts'
import { formatReport } from './report.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-build-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const quiet = (out: string, extra: Partial<BuildOptions> = {}): BuildOptions => ({
  out,
  reporter: createReporter({ quiet: true }),
  ...extra,
})

/** Float initializers of an ONNX file's bytes. */
function floats(bytes: Uint8Array): Map<string, Float32Array> {
  const m = readOnnxBytes(bytes, 'pkg')
  const out = new Map<string, Float32Array>()
  for (const [name, t] of m.initializers) if (t.dataType === 1) out.set(name, tensorToFloat32(t))
  return out
}

/** Nothing but `keep` in a directory: no half-written package, no staging leftovers. */
async function entries(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort()
}

describe('buildPackage on a generated MLP', async () => {
  const fx = await writeBuildFixture(join(root, 'mlp'))
  const out = join(root, 'mlp-out', 'pkg')
  const report = await buildPackage(fx.recipePath, quiet(out))

  it('writes a package that loads with every hash verified, listing experts, ranks, router and variants', async () => {
    const pkg = await loadPackage(out)
    const m = pkg.manifest
    expect(m.name).toBe('test-mlp')
    expect(m.experts.map((e) => e.name)).toEqual(['task-a', 'task-b', 'task-c'])
    expect(m.inputs).toEqual([{ name: 'x', datatype: 'FP32', shape: [-1, MLP_SIZES.dIn] }])
    expect(m.outputs).toEqual([{ name: 'logits', datatype: 'FP32', shape: [-1, MLP_SIZES.dOut] }])
    expect(m.exclusive.map((e) => [e.name, e.kind, e.ranks])).toEqual([
      ['fc1.weight', 'matrix', [2, 2, 2]],
      ['fc1.bias', 'vector', undefined],
      ['fc2.weight', 'matrix', [2, 2, 2]],
      ['fc2.bias', 'vector', undefined],
      ['head.weight', 'matrix', [2, 2, 2]],
      ['head.bias', 'vector', undefined],
    ])
    expect(m.router).toMatchObject({ kind: 'mlp', feature: 'relu_5', featureSize: MLP_SIZES.h2 })
    expect(m.router.heldoutAccuracy).toBeGreaterThan(0.8)
    expect(m.variants.map((v) => v.name)).toEqual([SHARED_VARIANT, 'ties'])
    expect(Object.keys(m.files).sort()).toEqual([
      'model.onnx',
      'variants/shared.onnx',
      'variants/ties.onnx',
    ])
    expect((await entries(join(root, 'mlp-out'))).filter((f) => f.startsWith('.'))).toEqual([])
  })

  it('shared equals task arithmetic λ=0.3 computed by hand, in the shared variant and in the twin graph', async () => {
    const pkg = await loadPackage(out)
    const shared = floats(pkg.variants.get(SHARED_VARIANT) as Uint8Array)
    const twin = floats(pkg.model)
    const dims: Record<string, number[]> = {
      'fc1.weight': [8, 16],
      'fc2.weight': [16, 12],
      'head.weight': [4, 12],
      'head.bias': [4],
    }
    for (const [name, d] of Object.entries(dims)) {
      const b = fx.params.base(name, d)
      const expected = b.map(
        (x, i) =>
          x + 0.3 * fx.params.experts.reduce((a, e) => a + ((e(name, d)[i] as number) - x), 0),
      )
      const got = shared.get(name) as Float32Array
      for (let i = 0; i < expected.length; i++) expect(got[i]).toBeCloseTo(expected[i] as number, 5)
      expect(Array.from(twin.get(name) ?? [])).toEqual(Array.from(got))
    }
    // The TIES variant is a different merge.
    const ties = floats(pkg.variants.get('ties') as Uint8Array)
    expect(Array.from(ties.get('fc2.weight') ?? [])).not.toEqual(
      Array.from(shared.get('fc2.weight') ?? []),
    )
  })

  it('verifies: zero weights give the shared model exactly, the embedded router matches the trained one', () => {
    const v = report.verification
    expect(v.zeroWeightsMaxAbsDiff).toBe(0)
    expect(v.routerAgreement).toBeGreaterThanOrEqual(0.99)
    expect(v.routerHeldoutAccuracy).toBeCloseTo(report.router.heldoutAccuracy, 1)
    expect(v.experts).toHaveLength(3)
    for (const e of v.experts) {
      // Rank 2 of up to 12: a real compression error, smaller than the expert's distance from the shared model.
      expect(e.oneHotMaxAbsDiff).toBeGreaterThan(0)
      expect(e.oneHotMaxAbsDiff).toBeLessThan(e.sharedMaxAbsDiff)
    }
    expect(v.variants.every((x) => x.finite)).toBe(true)
    expect(report.sizes.packageBytes).toBeGreaterThan(0)
  })

  it('refuses a tampered or incomplete built package', async () => {
    const file = join(out, 'variants', 'ties.onnx')
    const bytes = await readFile(file)
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 0xff
    await writeFile(file, bytes)
    await expect(loadPackage(out)).rejects.toThrow(/variants\/ties.onnx does not match its sha256/)
    await rm(file)
    await expect(loadPackage(out)).rejects.toThrow(
      /variants\/ties.onnx listed in the manifest is missing/,
    )
  })
})

describe('exclusive knowledge and rank', () => {
  it('one-hot error shrinks as rank grows and vanishes at full rank', async () => {
    const fx = await writeBuildFixture(join(root, 'ranks'), {
      recipe: { variants: [], router: { data: 'routing.jsonl', hidden: [8], epochs: 2, seed: 1 } },
    })
    const errors: number[] = []
    for (const rank of [1, 3, 12]) {
      const text = (await readFile(fx.recipePath, 'utf8')).replace(/rank: \d+/, `rank: ${rank}`)
      await writeFile(fx.recipePath, text)
      const r = await buildPackage(fx.recipePath, quiet(join(root, `ranks-${rank}`)))
      errors.push(Math.max(...r.verification.experts.map((e) => e.oneHotMaxAbsDiff)))
      if (rank === 12) {
        // Ranks are capped at min(rows, cols): full rank everywhere (12 is the largest matrix's rank).
        expect(r.manifest.exclusive.filter((e) => e.kind === 'matrix').map((e) => e.ranks)).toEqual(
          [
            [8, 8, 8],
            [12, 12, 12],
            [4, 4, 4],
          ],
        )
      }
    }
    expect(errors[0]).toBeGreaterThan(errors[1] as number)
    expect(errors[1]).toBeGreaterThan(errors[2] as number)
    expect(errors[2]).toBeLessThan(1e-4)
  })

  // Issue #16, case 7: rank 100000 was clamped silently and the package grew to 235% of the experts' bytes.
  it('refuses a rank above every matrix’s rank, naming the largest it could be', async () => {
    const fx = await writeBuildFixture(join(root, 'huge-rank'), { recipe: { variants: [] } })
    const text = (await readFile(fx.recipePath, 'utf8')).replace(/rank: \d+/, 'rank: 100000')
    await writeFile(fx.recipePath, text)
    await expect(buildPackage(fx.recipePath, quiet(join(root, 'huge-rank-out')))).rejects.toThrow(
      /exclusive rank 100000 exceeds the rank of every matrix it applies to \(the largest is 12: 'fc2.weight' \[16, 12\]\)/,
    )
  })

  it('builds the transformer block with a prototype router on an earlier tensor; full energy reproduces experts', async () => {
    const fx = await writeBuildFixture(join(root, 'block'), {
      kind: 'block',
      recipe: {
        exclusive: { energy: 1 },
        router: {
          data: 'routing.jsonl',
          kind: 'prototype',
          feature: 'layernormalization_1',
          temperature: 0.2,
        },
        variants: [
          { name: 'ties-twin', shared: { method: 'ties', density: 0.5 }, exclusive: true },
        ],
      },
    })
    const r = await buildPackage(fx.recipePath, quiet(join(root, 'block-out')))
    expect(r.manifest.router).toMatchObject({
      kind: 'prototype',
      feature: 'layernormalization_1',
      featureSize: 8,
    })
    expect(r.manifest.exclusive.map((e) => e.name)).toContain('attn.qk.weight') // shared by Q and K
    expect(r.manifest.exclusive.map((e) => e.name)).toContain('embed.weight') // used directly and transposed
    expect(r.verification.zeroWeightsMaxAbsDiff).toBe(0)
    for (const e of r.verification.experts) expect(e.oneHotMaxAbsDiff).toBeLessThan(1e-4)
    expect(r.variants.find((v) => v.name === 'ties-twin')).toMatchObject({ exclusive: true })
  })
})

describe('tensors the experts changed that carry no exclusive knowledge (#13)', () => {
  // Found by the user guide's PyTorch walkthrough: a position table the exporter folded into a constant [8, 32]
  // added to the activations lost each expert's changes, and only the verification's one-hot row showed it.
  it('are listed in the report with the reason, and the one-hot error they cause is reported', async () => {
    const fx = await writeBuildFixture(join(root, 'shared-only'), {
      kind: 'block',
      recipe: { variants: [], exclusive: { energy: 1, exclude: ['attn.layer_scale'] } },
    })
    // Each expert also changes the attention's scale, a rank-0 tensor the rewrite cannot carry.
    for (const [t, e] of fx.experts.entries()) {
      const model = decodeModel(await readFile(e.model), e.model)
      const scale = model.graph?.initializer?.find((x) => x.name === 'attn.scale')
      expect(scale).toBeDefined()
      if (scale) Object.assign(scale, floatTensor('attn.scale', Float32Array.of(0.3 + 0.1 * t), []))
      await writeFile(e.model, onnx.ModelProto.encode(model).finish())
    }
    const r = await buildPackage(fx.recipePath, quiet(join(root, 'shared-only-out')))
    expect(r.sharedOnly?.map((x) => [x.name, x.shape])).toEqual([
      ['attn.layer_scale', [8]],
      ['attn.scale', []],
    ])
    const [layerScale, scale] = r.sharedOnly ?? []
    expect(layerScale?.reason).toMatch(/left out by the recipe's exclusive.include \/ exclude/)
    expect(scale?.reason).toMatch(/it has rank 0/)
    // θ_t = 0.3 + 0.1·t against task arithmetic's base + 0.3·Σ(θ_t − base): a relative gap per expert.
    for (const row of r.sharedOnly ?? []) expect(Math.min(...row.relError)).toBeGreaterThan(1e-3)
    for (const e of r.verification.experts) expect(e.oneHotMaxAbsDiff).toBeGreaterThan(1e-3)
    const text = formatReport(r)
    expect(text).toMatch(/shared only: 2 tensors the experts changed carry no exclusive knowledge/)
    expect(text).toMatch(/^\| attn\.scale +\| \[\] +\| [\d.e+-]+ +\| it has rank 0/m)
  })

  it('are not listed when the experts left them as the base had them', async () => {
    const fx = await writeBuildFixture(join(root, 'shared-only-none'), {
      kind: 'block',
      recipe: { variants: [], exclusive: { energy: 1 } },
    })
    const r = await buildPackage(fx.recipePath, quiet(join(root, 'shared-only-none-out')))
    // attn.scale is unsupported but equal in every model: nothing was dropped.
    expect(r.sharedOnly).toEqual([])
    expect(formatReport(r)).not.toMatch(/shared only/)
  })
})

describe('compact packages: no shared file, float16 factors, per-tensor ranks', async () => {
  const recipe = {
    variants: [],
    shared_file: false,
    exclusive: {
      rank: 2,
      dtype: 'float16',
      tensors: [
        { match: 'head.*', rank: 4 }, // full rank of the [4, 12] head
        { match: '/^fc2/', energy: 1 },
      ],
    },
  }
  const fx = await writeBuildFixture(join(root, 'compact'), { recipe })
  const report = await buildPackage(fx.recipePath, quiet(join(root, 'compact-out')))
  const fx32 = await writeBuildFixture(join(root, 'compact32'), {
    recipe: { ...recipe, exclusive: { ...recipe.exclusive, dtype: 'float32' } },
  })
  const report32 = await buildPackage(fx32.recipePath, quiet(join(root, 'compact32-out')))
  const fx8 = await writeBuildFixture(join(root, 'compact8'), {
    recipe: { ...recipe, exclusive: { ...recipe.exclusive, dtype: 'int8' } },
  })
  const report8 = await buildPackage(fx8.recipePath, quiet(join(root, 'compact8-out')))

  it('writes no shared variant file, and verifies zero weights against the shared merge in memory', async () => {
    const pkg = await loadPackage(report.dir)
    expect(Object.keys(pkg.manifest.files)).toEqual(['model.onnx'])
    expect(pkg.manifest.variants).toEqual([])
    expect(report.verification.zeroWeightsMaxAbsDiff).toBe(0)
    expect(report.sizes.files['variants/shared.onnx']).toBeUndefined()
  })

  it('applies the first matching tensor rule, else the global rank', () => {
    const ranks = Object.fromEntries(report.manifest.exclusive.map((e) => [e.name, e.ranks]))
    expect(ranks['fc1.weight']).toEqual([2, 2, 2])
    expect(ranks['fc2.weight']).toEqual([12, 12, 12]) // energy 1: every singular value of [16, 12]
    expect(ranks['head.weight']).toEqual([4, 4, 4])
  })

  it('stores U and Vᵀ as FLOAT16 behind a Cast (σ and vector deltas stay float32), about half the factor bytes', async () => {
    const half = readOnnxBytes((await loadPackage(report.dir)).model, 'half')
    const full = readOnnxBytes((await loadPackage(report32.dir)).model, 'full')
    for (const w of ['fc1.weight', 'fc2.weight', 'head.weight']) {
      for (const suffix of ['.twin_u', '.twin_v']) {
        expect(half.initializers.get(`${w}${suffix}`)?.dataType, w + suffix).toBe(10) // FLOAT16
        expect(full.initializers.get(`${w}${suffix}`)?.dataType, w + suffix).toBe(1)
        const casts = (half.graph.node ?? []).filter(
          (n) => n.opType === 'Cast' && n.input?.[0] === `${w}${suffix}`,
        )
        expect(casts).toHaveLength(1)
      }
      expect(half.initializers.get(`${w}.twin_sigma`)?.dataType).toBe(1)
    }
    expect(half.initializers.get('fc1.bias.twin_delta')?.dataType).toBe(1)
    const factorBytes = (m: typeof half) =>
      [...m.initializers.entries()]
        .filter(([n]) => n.endsWith('.twin_u') || n.endsWith('.twin_v'))
        .reduce((a, [, t]) => a + (t.rawData?.byteLength ?? 0), 0)
    expect(factorBytes(half) * 2).toBe(factorBytes(full))
    expect(report.sizes.packageBytes).toBeLessThan(report32.sizes.packageBytes)
  })

  it('float16 factors cost only rounding: one-hot outputs stay within 1e-2 relative of the float32 build', () => {
    report.verification.experts.forEach((e, t) => {
      const e32 = report32.verification.experts[t]
      expect(e.sharedMaxAbsDiff).toBe(e32?.sharedMaxAbsDiff)
      // head and fc2 are at full rank in both: what remains is fc1's rank-2 truncation, plus float16 rounding.
      expect(Math.abs(e.oneHotMaxAbsDiff - (e32?.oneHotMaxAbsDiff ?? 0))).toBeLessThan(
        1e-2 * e.sharedMaxAbsDiff,
      )
    })
  })
  it('int8 factors: INT8 U and Vᵀ behind the same single Cast, a quarter of the float32 factor bytes, σ carrying the scales', async () => {
    const q = readOnnxBytes((await loadPackage(report8.dir)).model, 'int8')
    const full = readOnnxBytes((await loadPackage(report32.dir)).model, 'full')
    for (const w of ['fc1.weight', 'fc2.weight', 'head.weight']) {
      for (const suffix of ['.twin_u', '.twin_v']) {
        expect(q.initializers.get(`${w}${suffix}`)?.dataType, w + suffix).toBe(3) // INT8
        const uses = (q.graph.node ?? []).filter((n) => n.input?.includes(`${w}${suffix}`))
        expect(uses.map((n) => n.opType)).toEqual(['Cast'])
      }
      expect(q.initializers.get(`${w}.twin_sigma`)?.dataType).toBe(1)
    }
    const factorBytes = (m: typeof q) =>
      [...m.initializers.entries()]
        .filter(([n]) => n.endsWith('.twin_u') || n.endsWith('.twin_v'))
        .reduce((a, [, t]) => a + (t.rawData?.byteLength ?? 0), 0)
    expect(factorBytes(q) * 4).toBe(factorBytes(full))
    expect(report8.sizes.packageBytes).toBeLessThan(report.sizes.packageBytes)
  })

  it('int8 factors cost only rounding: one-hot outputs stay within 5e-2 relative of the float32 build, and the runner reads them back', async () => {
    report8.verification.experts.forEach((e, t) => {
      const e32 = report32.verification.experts[t]
      expect(e.sharedMaxAbsDiff).toBe(e32?.sharedMaxAbsDiff)
      expect(Math.abs(e.oneHotMaxAbsDiff - (e32?.oneHotMaxAbsDiff ?? 0))).toBeLessThan(
        5e-2 * e.sharedMaxAbsDiff,
      )
    })
    // The materialised path (model/materialize.ts) widens the int8 factors: U·diag(σ)·Vᵀ matches the float32 package's.
    const [pkg8, pkg32] = [await loadPackage(report8.dir), await loadPackage(report32.dir)]
    const f8 = readExclusiveFactors(readOnnxBytes(pkg8.model, 'q').graph, pkg8.manifest)
    const f32 = readExclusiveFactors(readOnnxBytes(pkg32.model, 'f').graph, pkg32.manifest)
    for (const [k, a] of f8.entries()) {
      const b = f32[k]
      if (a.kind !== 'matrix' || b?.kind !== 'matrix') continue
      for (let t = 0; t < 3; t++) {
        const [d8, d32] = [await expertDelta(a, t), await expertDelta(b, t)]
        const scale = Math.max(...d32.map(Math.abs))
        const err = Math.max(...d8.map((v, i) => Math.abs(v - (d32[i] as number))))
        expect(err, `${a.name} expert ${t}`).toBeLessThan(2e-2 * scale)
      }
    }
  })
})

describe('bad input: clear errors, nothing written to --out', () => {
  const cases: [
    string,
    (fx: Awaited<ReturnType<typeof writeBuildFixture>>) => Promise<void>,
    RegExp,
  ][] = [
    [
      'an expert with another graph',
      async (fx) =>
        writeFile(
          fx.experts[1]?.model as string,
          transformerModel(() => new Float32Array(64)),
        ),
      /expert 'task-b' \(.*task-b.onnx\) does not have the base model's graph \(.*base.onnx\): graph input 0/,
    ],
    [
      'a corrupt expert file',
      async (fx) =>
        writeFile(fx.experts[2]?.model as string, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9)),
      /task-c.onnx: is not a readable ONNX model/,
    ],
    ['a missing base file', async (fx) => rm(fx.base), /base.onnx: file not found/],
    [
      'an exclude pattern that matches no tensor',
      async (fx) =>
        rewrite(fx.recipePath, (t) => t.replace('rank: 2', 'rank: 2\n  exclude: ["nosuch.*"]')),
      /nosuch/,
    ],
    [
      'a per-tensor rule that matches no matrix',
      async (fx) =>
        rewrite(fx.recipePath, (t) =>
          t.replace('rank: 2', 'rank: 2\n  tensors: [{ match: "fc9.*", rank: 3 }]'),
        ),
      /exclusive.tensors: tensor pattern fc9.\* matches none of the 3 matrices that carry exclusive knowledge/,
    ],
    [
      'an unknown router feature',
      async (fx) =>
        rewrite(fx.recipePath, (t) =>
          t.replace('data: routing.jsonl', 'data: routing.jsonl\n  feature: nope'),
        ),
      /router.feature 'nope' is not a tensor of the base graph/,
    ],
    [
      'routing data naming an unknown expert',
      async (fx) =>
        writeFile(
          fx.routing,
          `${JSON.stringify({ expert: 'zzz', inputs: { x: [1, 2, 3, 4, 5, 6, 7, 8] } })}\n`,
        ),
      /routing.jsonl, line 1: expert 'zzz' is not in the recipe/,
    ],
    [
      'routing data with a wrong input size',
      async (fx) =>
        writeFile(
          fx.routing,
          ['task-a', 'task-b', 'task-c']
            .map((expert) => `${JSON.stringify({ expert, inputs: { x: [1, 2] } })}\n`.repeat(3))
            .join(''),
        ),
      /input 'x' has 2 values, the model expects 8 per example/,
    ],
    [
      'a recipe with a typo',
      async (fx) => rewrite(fx.recipePath, (t) => `${t}colour: blue\n`),
      /recipe .* is invalid: .*colour/,
    ],
  ]
  it.each(cases)('%s', async (label, breakIt, message) => {
    const dir = join(root, `bad-${label.replace(/\W+/g, '-')}`)
    const fx = await writeBuildFixture(dir, { recipe: { variants: [] } })
    await breakIt(fx)
    const parent = join(dir, 'out-parent')
    await expect(buildPackage(fx.recipePath, quiet(join(parent, 'pkg')))).rejects.toThrow(message)
    expect(await readdir(parent).catch(() => [])).toEqual([])
  })

  it('refuses an include pattern that picks a tensor the rewrite cannot carry, saying why', async () => {
    const fx = await writeBuildFixture(join(root, 'bad-include'), {
      kind: 'block',
      recipe: { variants: [], exclusive: { rank: 2, include: ['attn.*'] } },
    })
    await expect(
      buildPackage(fx.recipePath, quiet(join(root, 'bad-include', 'out'))),
    ).rejects.toThrow(
      /exclusive.include selects 'attn.scale', which cannot carry exclusive knowledge: it has rank 0/,
    )
  })

  it('refuses an existing --out without --force and keeps it; replaces it with --force after verifying', async () => {
    const fx = await writeBuildFixture(join(root, 'force'), { recipe: { variants: [] } })
    const out = join(root, 'force-out')
    await buildPackage(fx.recipePath, quiet(out))
    const before = await readFile(join(out, 'manifest.json'), 'utf8')
    await expect(buildPackage(fx.recipePath, quiet(out))).rejects.toThrow(
      /already exists \(pass --force/,
    )
    expect(await readFile(join(out, 'manifest.json'), 'utf8')).toBe(before)
    await buildPackage(fx.recipePath, quiet(out, { force: true }))
    expect(await readFile(join(out, 'manifest.json'), 'utf8')).not.toBe(before) // createdAt differs
    expect((await readdir(root)).filter((f) => f.startsWith('.force-out'))).toEqual([])
  })
})

async function rewrite(path: string, f: (text: string) => string): Promise<void> {
  await writeFile(path, f(await readFile(path, 'utf8')))
}
