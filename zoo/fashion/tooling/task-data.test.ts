import { AppError } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { loadDigits, parseDigitsCsv } from './digits.ts'
import { loadFashionMnist } from './fashion-mnist.ts'
import { blur3x3, resizeBilinear, rotate90 } from './image-ops.ts'
import { loadTaskSplit, splitIndices } from './task-data.ts'
import { pixelPermutation, ZOO_TASK_NAMES, ZOO_TASKS } from './tasks.ts'

const K = 20 // examples per check: real data, small subsets
const row = (x: Float32Array, r: number) => x.subarray(r * 784, (r + 1) * 784)

describe('zoo tasks on real data', () => {
  const orig = loadTaskSplit('original', 'test', { limit: K })
  const raw = loadFashionMnist('test')

  it('defines at least 6 tasks, each with one 28x28 input and 10 named classes', () => {
    expect(ZOO_TASKS.length).toBeGreaterThanOrEqual(6)
    for (const t of ZOO_TASKS) {
      expect(t.classes).toHaveLength(10)
      expect(t.description.length).toBeGreaterThan(20)
      const s = loadTaskSplit(t.name, 'val', { limit: 5 })
      expect([s.n, s.x.length, s.y.length]).toEqual([5, 5 * 784, 5])
      expect(Math.min(...s.x)).toBeGreaterThanOrEqual(0)
      expect(Math.max(...s.x)).toBeLessThanOrEqual(1)
    }
  })

  it('original is the raw image / 255 with its label', () => {
    for (let r = 0; r < K; r++) {
      const si = orig.sourceIndex[r] as number
      expect(orig.y[r]).toBe(raw.labels[si])
      for (const p of [0, 300, 406, 783])
        expect(row(orig.x, r)[p]).toBe(Math.fround((raw.images[si * 784 + p] as number) / 255))
    }
  })

  it('inverted, rotated and permuted are exact pixel transforms of the same images', () => {
    const inv = loadTaskSplit('inverted', 'test', { limit: K })
    const rot = loadTaskSplit('rotated', 'test', { limit: K })
    const per = loadTaskSplit('permuted', 'test', { limit: K })
    const perm = pixelPermutation()
    expect(Array.from(perm).sort((a, b) => a - b)).toEqual(Array.from({ length: 784 }, (_, i) => i))
    expect(perm.filter((v, i) => v === i).length).toBeLessThan(10) // a real shuffle, not near-identity
    for (let r = 0; r < K; r++) {
      const o = row(orig.x, r)
      expect(inv.y[r]).toBe(orig.y[r])
      expect(Array.from(row(inv.x, r))).toEqual(Array.from(o, (v) => Math.fround(1 - v)))
      // Pixel (row 0, col 27) of the rotated image is pixel (row 0, col 0) of the original, etc.
      const ro = row(rot.x, r)
      for (const [rr, cc] of [
        [0, 0],
        [3, 17],
        [27, 5],
      ] as const)
        expect(ro[rr * 28 + cc]).toBe(o[(27 - cc) * 28 + rr])
      expect(Array.from(row(per.x, r))).toEqual(Array.from(perm, (src) => o[src]))
    }
    expect(Array.from(row(rot.x, 0))).toEqual(
      Array.from(rotate90(row(orig.x, 0), 28, new Float32Array(784))),
    )
  })

  it('blur-noise is the blurred image plus fixed per-image noise, identical on every load', () => {
    const a = loadTaskSplit('blur-noise', 'test', { limit: K })
    const b = loadTaskSplit('blur-noise', 'test', { limit: K })
    expect(Buffer.from(a.x.buffer).equals(Buffer.from(b.x.buffer))).toBe(true)
    let sq = 0
    for (let r = 0; r < K; r++) {
      const blurred = blur3x3(row(orig.x, r), 28, new Float32Array(784))
      row(a.x, r).forEach((v, p) => {
        sq += (v - (blurred[p] as number)) ** 2
      })
    }
    const rms = Math.sqrt(sq / (K * 784))
    // sigma 0.3 noise, less where clipping at 0 cuts it (dark backgrounds): clearly noisy, clearly not random.
    expect(rms).toBeGreaterThan(0.15)
    expect(rms).toBeLessThan(0.3)
  })

  it('digits are the 8x8 CSV images scaled to [0, 1] and upsampled to 28x28', () => {
    const d = loadTaskSplit('digits', 'test', { limit: K })
    const rawDigits = loadDigits()
    for (let r = 0; r < K; r++) {
      const si = d.sourceIndex[r] as number
      expect(d.y[r]).toBe(rawDigits.labels[si])
      const src = Float32Array.from(
        rawDigits.images.subarray(si * 64, (si + 1) * 64),
        (v) => v / 16,
      )
      expect(Array.from(row(d.x, r))).toEqual(
        Array.from(resizeBilinear(src, 8, 28, new Float32Array(784))),
      )
      expect(row(d.x, r)[0]).toBe(src[0])
      expect(row(d.x, r)[783]).toBe(src[63])
    }
  })
})

describe('splits', () => {
  it('Fashion: val is a 5,000 carve-out of the training file, disjoint from train; test is the t10k file', () => {
    const train = splitIndices('fashion-mnist', 'train')
    const val = splitIndices('fashion-mnist', 'val')
    expect([train.length, val.length, splitIndices('fashion-mnist', 'test').length]).toEqual([
      55000, 5000, 10000,
    ])
    const all = new Set([...train, ...val])
    expect(all.size).toBe(60000)
    expect(Array.from(splitIndices('fashion-mnist', 'val'))).toEqual(Array.from(val)) // seeded: stable
  })

  it('digits: stratified 70/10/20 split of the 1,797 rows, disjoint', () => {
    const { labels } = loadDigits()
    const parts = (['train', 'val', 'test'] as const).map((s) => splitIndices('digits', s))
    expect(parts.map((p) => p.length)).toEqual([1259, 179, 359])
    expect(new Set(parts.flatMap((p) => Array.from(p))).size).toBe(1797)
    const testPerClass = new Array(10).fill(0)
    for (const i of parts[2] ?? []) testPerClass[labels[i] as number]++
    for (const c of testPerClass) expect(c).toBeGreaterThanOrEqual(35)
  })

  it('refuses unknown tasks and splits with the valid names', () => {
    expect(() => loadTaskSplit('mnist', 'train')).toThrow(
      /unknown zoo task 'mnist'; tasks: original, inverted/,
    )
    const err = (() => {
      try {
        loadTaskSplit('original', 'dev' as 'val')
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(AppError)
    expect((err as AppError).message).toMatch(/unknown split 'dev'/)
    expect(ZOO_TASK_NAMES).toContain('digits')
  })

  it('digits CSV parser refuses malformed rows', () => {
    expect(() => parseDigitsCsv('1,2,3\n', 'x.csv')).toThrow(/line 1 has 3 values, expected 65/)
    const line = `${new Array(64).fill(0).join(',')},10`
    expect(() => parseDigitsCsv(line, 'x.csv')).toThrow(
      /column 65 is '10', expected an integer 0..9/,
    )
    const bad = `17,${new Array(63).fill(0).join(',')},1`
    expect(() => parseDigitsCsv(bad, 'x.csv')).toThrow(
      /column 1 is '17', expected an integer 0..16/,
    )
  })
})
