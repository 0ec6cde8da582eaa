/**
 * The Grams regmean merges with, on real ONNX files: the Fashion zoo's MLP (MatMul weights stored [d_in, d_out])
 * and the PyTorch-exported encoder (MatMul on transposed copies, a Gemm transB=1 head, a Gather embedding). Each
 * Gram must equal XᵀX / rows of the weight's input computed another way: from the pixels themselves, from the
 * expert's own weights in JS, or read through a probe session.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseMergeSpec } from '@twinserve/shared'
import { afterAll, describe, expect, it } from 'vitest'
import { mergeTensor } from '../../merge/index.ts'
import { TensorProbe } from '../graph/probe.ts'
import { stackExamples } from '../import/model-io.ts'
import { floatInitializers, readOnnx } from '../import/read-onnx.ts'
import { collectGrams, gramSites } from './input-grams.ts'
import { loadInputs } from './load-inputs.ts'
import { createReporter } from './progress.ts'

const REPO = join(import.meta.dirname, '../../../..')
const FASHION = join(REPO, 'zoo/fashion/models')
const ENCODER = join(REPO, 'test/fixtures/pytorch/encoder')
const root = await mkdtemp(join(tmpdir(), 'twinserve-grams-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const quiet = createReporter({ quiet: true })

/** XᵀX / rows of row-major X [rows, d], in float64. */
function gramOf(x: ArrayLike<number>, d: number): Float64Array {
  const rows = x.length / d
  const g = new Float64Array(d * d)
  for (let r = 0; r < rows; r++)
    for (let a = 0; a < d; a++) {
      const xa = x[r * d + a] as number
      if (xa === 0) continue
      for (let b = 0; b < d; b++)
        g[a * d + b] = (g[a * d + b] as number) + xa * (x[r * d + b] as number)
    }
  return g.map((v) => v / rows)
}

function expectGram(actual: Float64Array | undefined, expected: Float64Array): void {
  expect(actual?.length).toBe(expected.length)
  const scale = expected.reduce((a, v) => Math.max(a, Math.abs(v)), 0)
  let worst = 0
  for (let j = 0; j < expected.length; j++)
    worst = Math.max(worst, Math.abs((actual?.[j] as number) - (expected[j] as number)))
  expect(worst / scale).toBeLessThan(1e-5)
}

/** relu(x·W + b) of row-major x [rows, dIn] for W [dIn, dOut]. */
function dense(x: Float32Array, w: Float32Array, b: Float32Array, dIn: number): Float32Array {
  const dOut = b.length
  const rows = x.length / dIn
  const out = new Float32Array(rows * dOut)
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < dOut; o++) {
      let s = b[o] as number
      for (let k = 0; k < dIn; k++) s += (x[r * dIn + k] as number) * (w[k * dOut + o] as number)
      out[r * dOut + o] = Math.max(0, s)
    }
  return out
}

describe('Gram matrices on the Fashion zoo MLP', async () => {
  const tasks = ['original', 'inverted', 'rotated']
  // Image-like inputs: a blank border (pixels no example lights up) around values in [0, 1].
  let seed = 7
  const next = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    return seed / 2 ** 31
  }
  const lines: string[] = []
  for (let i = 0; i < 20; i++)
    for (const t of tasks) {
      const pixels = Array.from({ length: 784 }, (_, p) =>
        p % 28 < 2 || p < 56 ? 0 : Math.round(next() * 1000) / 1000,
      )
      lines.push(JSON.stringify({ expert: t, inputs: { pixels } }))
    }
  await writeFile(join(root, 'fashion.jsonl'), `${lines.join('\n')}\n`)
  const recipe = join(root, 'fashion.json')
  await writeFile(
    recipe,
    JSON.stringify({
      name: 'fashion-grams',
      base: join(FASHION, 'base.onnx'),
      experts: tasks.map((t) => ({ name: t, model: join(FASHION, 'experts', `${t}.onnx`) })),
      shared: { method: 'regmean' },
      exclusive: { rank: 2 },
      router: { data: 'fashion.jsonl', feature: 'hidden1' },
    }),
  )
  const staging = join(root, 'fashion-staging')
  await mkdir(staging, { recursive: true })
  const ctx = await loadInputs(recipe, quiet, { staging, externalAbove: 2 ** 31 - 1 })
  const grams = await (await collectGrams(ctx)).toMap()

  it('finds every MatMul weight, stored [d_in, d_out]', () => {
    expect([...grams].map(([name, g]) => [name, g.dIn, g.transposed, g.perExpert.length])).toEqual([
      ['fc1.weight', 784, false, 3],
      ['fc2.weight', 256, false, 3],
      ['fc3.weight', 128, false, 3],
    ])
  })

  it("fc1's Gram is the mean pixel outer product of each expert's train-split examples", () => {
    tasks.forEach((_, i) => {
      const own = ctx.split.train.filter((e) => e.expert === i)
      expect(own.length).toBeGreaterThan(5)
      const x = Float64Array.from(own.flatMap((e) => [...(e.inputs.pixels ?? [])]))
      expectGram(grams.get('fc1.weight')?.perExpert[i], gramOf(x, 784))
    })
    // Nobody lights the border: its row and column of G are zero (the case the ridge resolves to the average).
    expect(grams.get('fc1.weight')?.perExpert[0]?.[0]).toBe(0)
  })

  it("fc3's Gram is that of the expert's own hidden2 = relu(relu(x·W1 + b1)·W2 + b2), computed in JS", async () => {
    for (const [i, t] of tasks.entries()) {
      const w = floatInitializers(await readOnnx(join(FASHION, 'experts', `${t}.onnx`)))
      const own = ctx.split.train.filter((e) => e.expert === i)
      const x = Float32Array.from(own.flatMap((e) => [...(e.inputs.pixels ?? [])]))
      const h1 = dense(
        x,
        w.get('fc1.weight') as Float32Array,
        w.get('fc1.bias') as Float32Array,
        784,
      )
      const h2 = dense(
        h1,
        w.get('fc2.weight') as Float32Array,
        w.get('fc2.bias') as Float32Array,
        256,
      )
      const expected = gramOf(h2, 128)
      expectGram(grams.get('fc3.weight')?.perExpert[i], expected)
      // Each expert sees its own activations: another expert's Gram differs.
      const other = grams.get('fc3.weight')?.perExpert[(i + 1) % 3] as Float64Array
      expect(Math.abs((other[0] as number) - (expected[0] as number))).toBeGreaterThan(0)
    }
  })
})

describe('Gram matrices on the PyTorch-exported encoder (MatMul, Gemm transB=1, Gather)', async () => {
  const experts = ['expert-1', 'expert-2', 'expert-3']
  let seed = 3
  const next = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    return seed / 2 ** 31
  }
  const lines: string[] = []
  for (let i = 0; i < 12; i++)
    for (const name of experts) {
      const ids = Array.from({ length: 8 }, () => 1 + Math.floor(next() * 47))
      const mask = ids.map((_, p) => (p < 5 + (i % 4) ? 1 : 0))
      lines.push(JSON.stringify({ expert: name, inputs: { input_ids: ids, attention_mask: mask } }))
    }
  await writeFile(join(root, 'encoder.jsonl'), `${lines.join('\n')}\n`)
  const recipe = join(root, 'encoder.json')
  await writeFile(
    recipe,
    JSON.stringify({
      name: 'encoder-grams',
      base: join(ENCODER, 'base.onnx'),
      experts: experts.map((e) => ({ name: e, model: join(ENCODER, `${e}.onnx`) })),
      shared: { method: 'regmean' },
      exclusive: { rank: 2 },
      router: { data: 'encoder.jsonl' },
    }),
  )
  const staging = join(root, 'encoder-staging')
  await mkdir(staging, { recursive: true })
  const ctx = await loadInputs(recipe, quiet, { staging, externalAbove: 2 ** 31 - 1 })
  const grams = await (await collectGrams(ctx)).toMap()

  it('solves the linear weights in their stored layout; the embedding tables are averaged', () => {
    const { averaged } = gramSites(ctx.base.graph.node ?? [], ctx.sites)
    expect(averaged.map((a) => a.tensor).sort()).toEqual(['pos.weight', 'tok.weight'])
    expect(grams.get('cls.weight')).toMatchObject({ dIn: 32, transposed: true })
    expect(grams.get('onnx::MatMul_376')).toMatchObject({ dIn: 32, transposed: false })
    // q, k, v, o, fc1, fc2 per block, and the head.
    expect(grams.size).toBe(13)
  })

  it('each Gram equals XᵀX / rows of its input read through a probe of that expert', async () => {
    for (const [i, e] of experts.entries()) {
      const own = ctx.split.train.filter((x) => x.expert === i)
      const model = (await readOnnx(join(ENCODER, `${e}.onnx`))).model
      const names = ['/Div_output_0', '/blocks.0/Mul_1_output_0']
      const probe = await TensorProbe.open(model, names)
      try {
        // The examples' lengths are equal (8 ids), so one batch holds them all.
        const out = await probe.run(
          stackExamples(
            ctx.inputs,
            own.map((x) => x.inputs),
            'test',
          ),
          names,
        )
        // cls: Gemm(pooled [batch, 32], cls.weight [4, 32], transB=1): the pooled rows.
        expectGram(
          grams.get('cls.weight')?.perExpert[i],
          gramOf(out.get('/Div_output_0')?.data as Float32Array, 32),
        )
        // blocks.0 fc2: MatMul([batch, seq, 64], [64, 32]): every position is a row, padding included.
        expectGram(
          grams.get('onnx::MatMul_384')?.perExpert[i],
          gramOf(out.get('/blocks.0/Mul_1_output_0')?.data as Float32Array, 64),
        )
      } finally {
        await probe.release()
      }
    }
  })
})

describe('regmean on the encoder head stored [d_out, d_in] (Gemm transB=1)', () => {
  it('the merged head satisfies the normal equations in its input frame: Σ_i G_i·(W*ᵀ − W_iᵀ) = 0', async () => {
    const recipe = join(root, 'encoder.json')
    const staging = join(root, 'encoder-head-staging')
    await mkdir(staging, { recursive: true })
    const ctx = await loadInputs(recipe, quiet, { staging, externalAbove: 2 ** 31 - 1 })
    const grams = await (await collectGrams(ctx)).read('cls.weight')
    const names = ['expert-1', 'expert-2', 'expert-3']
    const heads = await Promise.all(
      names.map(
        async (e) =>
          floatInitializers(await readOnnx(join(ENCODER, `${e}.onnx`))).get(
            'cls.weight',
          ) as Float32Array,
      ),
    )
    const merged = mergeTensor(parseMergeSpec({ method: 'regmean', alpha: 1 }), {
      base: new Float32Array(4 * 32),
      experts: heads,
      names,
      shape: [4, 32],
      tensorName: 'cls.weight',
      ...(grams ? { grams } : {}),
    })
    // W stored [4, 32]: the map is x·Wᵀ, so the residual is Σ_i G_i·(W* − W_i)ᵀ, [32, 4].
    let worst = 0
    let scale = 0
    for (let r = 0; r < 32; r++)
      for (let o = 0; o < 4; o++) {
        let s = 0
        heads.forEach((w, i) => {
          const g = grams?.perExpert[i] as Float64Array
          for (let k = 0; k < 32; k++) {
            s +=
              (g[r * 32 + k] as number) *
              ((merged[o * 32 + k] as number) - (w[o * 32 + k] as number))
            scale = Math.max(scale, Math.abs((g[r * 32 + k] as number) * (w[o * 32 + k] as number)))
          }
        })
        worst = Math.max(worst, Math.abs(s))
      }
    expect(worst / scale).toBeLessThan(1e-4)
    // Not the average: the Grams matter.
    const avg = heads[0]?.map((_, j) => heads.reduce((a, w) => a + (w[j] as number), 0) / 3) ?? []
    expect(Math.max(...merged.map((v, j) => Math.abs(v - (avg[j] as number))))).toBeGreaterThan(
      1e-3,
    )
  })
})
