/**
 * Small generated problems for the trainer's tests: Gaussian blobs, a reference loss, one-hot labels.
 * @module
 */
import { createRng, type MlpWeights } from '../src/train/index.ts'

/** Gaussian blobs: `classes` clusters in `dim` dimensions, `perClass` points each, labels 0..classes-1. */
export function blobs(
  classes: number,
  dim: number,
  perClass: number,
  seed: number,
  spread = 0.6,
): { x: Float32Array; y: Int32Array } {
  const rng = createRng(seed)
  const centres = Array.from({ length: classes }, () =>
    Array.from({ length: dim }, () => rng.normal() * 2),
  )
  const n = classes * perClass
  const x = new Float32Array(n * dim) // [n, dim]
  const y = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    const c = i % classes
    y[i] = c
    const centre = centres[c] as number[]
    for (let j = 0; j < dim; j++) x[i * dim + j] = (centre[j] as number) + rng.normal() * spread
  }
  return { x, y }
}

/** Mean softmax cross-entropy of an MLP in double precision, written independently of the ONNX graphs. */
export function referenceLoss(w: MlpWeights, x: Float32Array, y: Int32Array): number {
  const n = y.length
  let total = 0
  for (let r = 0; r < n; r++) {
    let h: number[] = Array.from(
      x.subarray(r * (w.sizes[0] as number), (r + 1) * (w.sizes[0] as number)),
    )
    w.layers.forEach((layer, i) => {
      const nIn = w.sizes[i] as number
      const nOut = w.sizes[i + 1] as number
      const z: number[] = []
      for (let o = 0; o < nOut; o++) {
        let s = layer.bias[o] as number
        for (let k = 0; k < nIn; k++) s += (h[k] as number) * (layer.weight[k * nOut + o] as number)
        z.push(i < w.layers.length - 1 ? Math.max(0, s) : s)
      }
      h = z
    })
    const max = Math.max(...h)
    const lse = max + Math.log(h.reduce((a, v) => a + Math.exp(v - max), 0))
    total += lse - (h[y[r] as number] as number)
  }
  return total / n
}

export function oneHot(y: Int32Array, classes: number): Float32Array {
  const t = new Float32Array(y.length * classes)
  y.forEach((label, i) => {
    t[i * classes + label] = 1
  })
  return t
}
