import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { initMlp, type MlpWeights } from './mlp.ts'
import { MlpSessions } from './mlp-sessions.ts'
import { createRng } from './rng.ts'
import {
  fma32,
  sgemmStrideK,
  sparseLinearForward,
  sparseLinearWeightGrad,
  toSparseRows,
} from './sparse-linear.ts'
import { trainMlp } from './train-mlp.ts'

/**
 * Bit-for-bit agreement holds where onnxruntime's MLAS runs the x86-64 kernel whose summation order
 * sparse-linear.ts reproduces (fused multiply-adds, K strides of 1,024); verified on this project's AVX-512 hosts.
 * Elsewhere (another kernel, maybe another order) the sums agree to float32 rounding, which is what the tests check
 * there instead of failing on the machine.
 */
const EXACT =
  process.arch === 'x64' &&
  (() => {
    try {
      return /\bavx512f\b/.test(readFileSync('/proc/cpuinfo', 'utf8'))
    } catch {
      return false
    }
  })()
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)
const close = (a: Float32Array, b: Float32Array) =>
  a.length === b.length &&
  a.every((v, i) => Math.abs(v - (b[i] as number)) <= 1e-5 * (1 + Math.abs(v)))
/** Equal bits on an FMA x86-64 host, equal to float32 rounding elsewhere. */
const same = (a: Float32Array, b: Float32Array) => (EXACT ? bits(a).equals(bits(b)) : close(a, b))
const sameBits = (a: MlpWeights, b: MlpWeights): boolean =>
  a.layers.every((l, i) => {
    const m = b.layers[i]
    return m !== undefined && same(l.weight, m.weight) && same(l.bias, m.bias)
  })

/** Rows like the text router's: a few dense columns, then a sparse non-negative bag; labels from the bag. */
function bagData(n: number, d: number, dense: number, classes: number, seed: number) {
  const rng = createRng(seed)
  const x = new Float32Array(n * d)
  const y = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    const label = rng.int(classes)
    y[i] = label
    for (let j = 0; j < dense; j++) x[i * d + j] = rng.normal()
    for (let k = 0; k < 12; k++) {
      // Half the bag's words come from the label's own part of the vocabulary.
      const part = k % 2 === 0 ? label : rng.int(classes)
      const width = Math.floor((d - dense) / classes)
      x[i * d + dense + part * width + rng.int(width)] = rng.uniform()
    }
  }
  return { x, y }
}

describe('sparse linear layer', () => {
  const C = 6
  // Three K strides of 1,024 (the last one partial) for 6 classes.
  const d = 2500

  it("uses MLAS's K stride: 1,024 for up to 16 classes, then halving as the N stride doubles", () => {
    expect([1, 6, 16, 17, 32, 33, 64, 65, 1000].map(sgemmStrideK)).toEqual([
      1024, 1024, 1024, 512, 512, 256, 256, 128, 128,
    ])
  })

  it('fma32 rounds once: right where a double sum then a float32 rounding is not', () => {
    const a = 1 + 2 ** -18
    const b = 2 ** -24 * (1 - 2 ** -18)
    const c = 1 + 2 ** -23
    // a·b + c = 1 + 2⁻²³ + 2⁻²⁴ − 2⁻⁶⁰: just under halfway, so it rounds down; the double sum drops the 2⁻⁶⁰.
    expect(fma32(a, b, c)).toBe(c)
    expect(Math.fround(a * b + c)).toBe(1 + 2 ** -22)
    expect(fma32(2, 3, 1)).toBe(7)
    expect(fma32(0.1, 0, -0)).toBe(0)
  })

  it("gives onnxruntime's logits and gradients bit for bit (CPU)", async () => {
    const { x, y } = bagData(300, d, 16, C, 3)
    const sessions = await MlpSessions.open([d, C], { provider: 'cpu' })
    try {
      const w = initMlp([d, C], 5)
      const layer = w.layers[0]
      if (!layer) throw new Error('no layer')
      layer.bias.set([0.01, -0.02, 0.03, 0.5, -1.25, 2])
      const sp = toSparseRows(x, d)
      const rows = Int32Array.from({ length: sp.n }, (_, i) => i)
      const logits = new Float32Array(sp.n * C)
      sparseLinearForward(sp, rows, layer.weight, layer.bias, C, logits)
      expect(same(logits, await sessions.logits(w, x))).toBe(true)

      const batch = Int32Array.from({ length: 64 }, (_, i) => (i * 37) % sp.n)
      const xb = new Float32Array(64 * d)
      const tb = new Float32Array(64 * C)
      batch.forEach((r, i) => {
        xb.set(x.subarray(r * d, (r + 1) * d), i * d)
        tb[i * C + (y[r] as number)] = 1
      })
      const want = await sessions.lossAndGradients(w, xb, tb)
      const got = new Float32Array(64 * C)
      sparseLinearForward(sp, batch, layer.weight, layer.bias, C, got)
      expect(same(got, want.logits)).toBe(true)
      const head = await sessions.lossHead(got, tb)
      if (EXACT) expect(head.loss).toBe(want.loss)
      else expect(head.loss).toBeCloseTo(want.loss, 5)
      const grad = new Float32Array(d * C)
      sparseLinearWeightGrad(sp, batch, head.dLogits, C, grad)
      expect(same(grad, want.grads[0]?.weight ?? new Float32Array())).toBe(true)
      expect(same(head.biasGrad, want.grads[0]?.bias ?? new Float32Array())).toBe(true)
    } finally {
      await sessions.release()
    }
  })

  it('trainMlp({ sparse: true }) trains the same bits as the graph, one-row batch and chunk included', async () => {
    // 129 rows in batches of 64 end on a one-row batch; 2,049 validation rows on a one-row forward chunk.
    const train = bagData(129, d, 16, C, 11)
    const val = bagData(2049, d, 16, C, 12)
    const opts = {
      layers: [d, C],
      x: train.x,
      y: train.y,
      valX: val.x,
      valY: val.y,
      epochs: 3,
      lr: 0.01,
      batchSize: 64,
      seed: 2,
    }
    const dense = await trainMlp(opts)
    const sparse = await trainMlp({ ...opts, sparse: true })
    expect(sameBits(dense.weights, sparse.weights)).toBe(true)
    if (EXACT)
      expect(sparse.history.map((h) => [h.trainLoss, h.valLoss, h.valAccuracy])).toEqual(
        dense.history.map((h) => [h.trainLoss, h.valLoss, h.valAccuracy]),
      )
    expect(sparse.steps).toBe(9)
  })

  it('refuses what it cannot reproduce: hidden layers, batches over one K stride', async () => {
    const { x, y } = bagData(10, d, 16, C, 1)
    const base = { x, y, epochs: 1, lr: 0.01, seed: 1, sparse: true }
    await expect(trainMlp({ ...base, layers: [d, 8, C], batchSize: 8 })).rejects.toThrow(
      /one-layer MLP/,
    )
    await expect(trainMlp({ ...base, layers: [d, C], batchSize: 2048 })).rejects.toThrow(
      /at most 1024 rows/,
    )
  })
})
