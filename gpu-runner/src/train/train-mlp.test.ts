import { AppError } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { blobs } from '../../test-support/train-helpers.ts'
import { initMlp, type MlpWeights } from './mlp.ts'
import { MlpSessions } from './mlp-sessions.ts'
import { trainMlp } from './train-mlp.ts'

const sameBits = (a: MlpWeights, b: MlpWeights): boolean =>
  a.layers.every((l, i) => {
    const m = b.layers[i]
    return (
      m !== undefined &&
      Buffer.from(l.weight.buffer).equals(Buffer.from(m.weight.buffer)) &&
      Buffer.from(l.bias.buffer).equals(Buffer.from(m.bias.buffer))
    )
  })

describe('trainMlp', () => {
  const train = blobs(3, 4, 60, 1)
  const val = blobs(3, 4, 20, 1) // same seed: same centres, but fewer (hence different) points per class
  const base = {
    layers: [4, 16, 3],
    x: train.x,
    y: train.y,
    valX: val.x,
    valY: val.y,
    epochs: 8,
    lr: 0.01,
    batchSize: 16,
    seed: 7,
  }

  it('reduces the loss on a small problem and reaches high validation accuracy', async () => {
    const r = await trainMlp(base)
    const first = r.history[0]
    const last = r.history.at(-1)
    expect(first && last).toBeTruthy()
    expect(last?.trainLoss).toBeLessThan((first?.trainLoss ?? 0) * 0.5)
    expect(Math.max(...r.history.map((h) => h.valAccuracy ?? 0))).toBeGreaterThan(0.9)
    expect(r.steps).toBe(Math.ceil(180 / 16) * r.history.length)
  })

  it('is deterministic: the same seed gives bit-identical weights, another seed different ones', async () => {
    const a = await trainMlp({ ...base, epochs: 3 })
    const b = await trainMlp({ ...base, epochs: 3 })
    const c = await trainMlp({ ...base, epochs: 3, seed: 8 })
    expect(sameBits(a.weights, b.weights)).toBe(true)
    expect(a.history.map((h) => h.trainLoss)).toEqual(b.history.map((h) => h.trainLoss))
    expect(sameBits(a.weights, c.weights)).toBe(false)
  })

  it('fine-tunes every tensor from an init without mutating it; SGD+momentum also learns', async () => {
    const init = initMlp([4, 16, 3], 99)
    const snapshot = init.layers.map((l) => [l.weight.slice(), l.bias.slice()])
    const r = await trainMlp({
      ...base,
      init,
      epochs: 2,
      optimizer: 'sgd',
      momentum: 0.9,
      lr: 0.05,
    })
    init.layers.forEach((l, i) => {
      expect(l.weight).toEqual(snapshot[i]?.[0])
      expect(l.bias).toEqual(snapshot[i]?.[1])
      const tuned = r.weights.layers[i]
      expect(tuned?.weight.some((v, k) => v !== l.weight[k])).toBe(true)
      expect(tuned?.bias.some((v, k) => v !== l.bias[k])).toBe(true)
    })
    expect(r.history[1]?.trainLoss).toBeLessThan(r.history[0]?.trainLoss ?? 0)
  })

  it('stops early and returns the best epoch by validation accuracy', async () => {
    // Validation labels that carry no signal: validation accuracy wanders, so patience runs out.
    const noisy = Int32Array.from(val.y, (_, i) => (i * 7 + 3) % 3)
    const r = await trainMlp({ ...base, valY: noisy, epochs: 40, patience: 2 })
    expect(r.stoppedEarly).toBe(true)
    expect(r.history.length).toBe(r.bestEpoch + 2)
    const bestAcc = Math.max(...r.history.map((h) => h.valAccuracy ?? 0))
    expect(r.history[r.bestEpoch - 1]?.valAccuracy).toBe(bestAcc)
    const s = await MlpSessions.open([4, 16, 3])
    try {
      expect((await s.evaluate(r.weights, val.x, noisy)).accuracy).toBe(bestAcc)
    } finally {
      await s.release()
    }
  })

  it('rejects bad input with a clear AppError', async () => {
    const cases: Array<[Partial<typeof base> & Record<string, unknown>, string, RegExp]> = [
      [
        { y: Int32Array.from(train.y, (v, i) => (i === 5 ? 3 : v)) },
        'INVALID_REQUEST',
        /y\[5\] = 3/,
      ],
      [{ x: train.x.subarray(1) }, 'INVALID_REQUEST', /x has 719 values/],
      [
        { x: Float32Array.from(train.x, (v, i) => (i === 9 ? Number.NaN : v)) },
        'INVALID_REQUEST',
        /x\[2, 1\] is NaN/,
      ],
      [
        { valX: undefined, valY: undefined, patience: 2 },
        'INVALID_REQUEST',
        /needs a validation split/,
      ],
      [{ layers: [4, 0, 3] }, 'INVALID_REQUEST', /positive integers/],
      [{ batchSize: 0 }, 'INVALID_REQUEST', /batchSize/],
      [{ init: initMlp([4, 8, 3], 1) }, 'INCOMPATIBLE_EXPERTS', /\[4,8,3\], expected \[4,16,3\]/],
    ]
    for (const [patch, code, message] of cases) {
      const err = await trainMlp({ ...base, ...patch } as typeof base).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(AppError)
      expect((err as AppError).code).toBe(code)
      expect((err as AppError).message).toMatch(message)
    }
  })

  it('reports divergence instead of returning NaN weights', async () => {
    const err = await trainMlp({ ...base, lr: 1e30, epochs: 3 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AppError)
    expect((err as AppError).message).toMatch(/loss became (NaN|Infinity).*lower the learning rate/)
  })
})
