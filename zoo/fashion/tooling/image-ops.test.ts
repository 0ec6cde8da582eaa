import { createRng } from '@twinserve/gpu-runner/train'
import { describe, expect, it } from 'vitest'
import {
  addGaussianNoise,
  blur3x3,
  invert,
  permutePixels,
  resizeBilinear,
  rotate90,
} from './image-ops.ts'

const img3 = () => Float32Array.of(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9) // [3, 3]
const out = (n: number) => new Float32Array(n)
const arr = (a: Float32Array) => Array.from(a, (v) => Math.round(v * 1e6) / 1e6)

describe('pixel operations', () => {
  it('invert gives 1 - x', () => {
    expect(arr(invert(img3(), out(9)))).toEqual([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
  })

  it('rotate90 turns clockwise: the top row becomes the right column', () => {
    // 0.1 0.2 0.3        0.7 0.4 0.1
    // 0.4 0.5 0.6   ->   0.8 0.5 0.2
    // 0.7 0.8 0.9        0.9 0.6 0.3
    expect(arr(rotate90(img3(), 3, out(9)))).toEqual([0.7, 0.4, 0.1, 0.8, 0.5, 0.2, 0.9, 0.6, 0.3])
    const four = rotate90(
      rotate90(rotate90(rotate90(img3(), 3, out(9)), 3, out(9)), 3, out(9)),
      3,
      out(9),
    )
    expect(arr(four)).toEqual(arr(img3()))
  })

  it('permutePixels moves pixel perm[i] to position i', () => {
    const perm = Int32Array.of(8, 0, 1, 2, 3, 4, 5, 6, 7)
    expect(arr(permutePixels(img3(), perm, out(9)))).toEqual([
      0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8,
    ])
  })

  it('blur3x3 spreads one bright pixel into the binomial kernel / 16, zero outside', () => {
    const src = out(25)
    src[12] = 1 // centre of 5x5
    const b = blur3x3(src, 5, out(25))
    expect(arr(b)).toEqual(
      [
        0,
        0,
        0,
        0,
        0,
        0,
        1 / 16,
        2 / 16,
        1 / 16,
        0,
        0,
        2 / 16,
        4 / 16,
        2 / 16,
        0,
        0,
        1 / 16,
        2 / 16,
        1 / 16,
        0,
        0,
        0,
        0,
        0,
        0,
      ].map((v) => Math.round(v * 1e6) / 1e6),
    )
    const corner = out(9)
    corner[0] = 1
    expect(arr(blur3x3(corner, 3, out(9)))).toEqual([0.25, 0.125, 0, 0.125, 0.0625, 0, 0, 0, 0])
  })

  it('resizeBilinear keeps corners and constants and interpolates between pixel centres', () => {
    // 2x2 -> 4x4: destination centres at source coords -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
    const src = Float32Array.of(0, 1, 0, 1) // [[0, 1], [0, 1]]
    const r = resizeBilinear(src, 2, 4, out(16))
    expect(arr(r.subarray(0, 4))).toEqual([0, 0.25, 0.75, 1])
    expect(arr(r.subarray(12, 16))).toEqual([0, 0.25, 0.75, 1])
    const src8 = Float32Array.from({ length: 64 }, (_, i) => i / 63)
    const up = resizeBilinear(src8, 8, 28, out(784))
    expect([up[0], up[27], up[756], up[783]].map((v) => Math.round((v ?? 0) * 63))).toEqual([
      0, 7, 56, 63,
    ])
    expect(
      arr(
        resizeBilinear(
          Float32Array.from({ length: 64 }, () => 0.5),
          8,
          28,
          out(784),
        ),
      ),
    ).toEqual(new Array(784).fill(0.5))
  })

  it('addGaussianNoise is seeded, clipped to [0, 1], and has the asked spread', () => {
    const a = addGaussianNoise(out(20000).fill(0.5), 0.1, createRng(9))
    const b = addGaussianNoise(out(20000).fill(0.5), 0.1, createRng(9))
    expect(arr(a)).toEqual(arr(b))
    const mean = a.reduce((s, v) => s + v, 0) / a.length
    const sd = Math.sqrt(a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length)
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.005)
    expect(Math.abs(sd - 0.1)).toBeLessThan(0.005)
    const clipped = addGaussianNoise(out(1000).fill(0.99), 1, createRng(1))
    expect(Math.min(...clipped)).toBe(0)
    expect(Math.max(...clipped)).toBe(1)
  })
})
