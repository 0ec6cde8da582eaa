/**
 * Offline sparse text classifier shared by the routing probes (text-routing-ceiling.ts, text-bigram-probe.ts):
 * tf-idf rows (sublinear counts, unit L2 norm) over integer feature keys, and a multinomial logistic regression
 * trained on them with Adagrad and L2 (no onnxruntime, no dense rows: a key space of 2^20 costs only its weights).
 * @module
 */

export type Sparse = { idx: Int32Array; val: Float32Array }

/** Each doc's keys as a tf-idf row: (1 + ln count) · idf, scaled to unit L2 norm. */
export function tfidf(docs: readonly (readonly number[])[], idf: Float32Array): Sparse[] {
  return docs.map((keys) => {
    const counts = new Map<number, number>()
    for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1)
    const idx = Int32Array.from(counts.keys())
    const val = Float32Array.from(
      idx,
      (k) => (1 + Math.log(counts.get(k) ?? 1)) * (idf[k] as number),
    )
    let norm = 0
    for (const v of val) norm += v * v
    norm = Math.sqrt(norm) || 1
    for (let i = 0; i < val.length; i++) val[i] = (val[i] as number) / norm
    return { idx, val }
  })
}

/** scikit-learn's smooth idf, ln((1 + n) / (1 + df)) + 1, over a key space of `width`. */
export function fitIdf(docs: readonly (readonly number[])[], width: number): Float32Array {
  const df = new Float32Array(width)
  for (const keys of docs) for (const k of new Set(keys)) df[k] = (df[k] as number) + 1
  return df.map((d) => Math.log((1 + docs.length) / (1 + d)) + 1)
}

/** Multinomial logistic regression over keys < `width`, Adagrad, L2 on the weights; returns its argmax. */
export function trainLr(
  x: readonly Sparse[],
  y: Int32Array,
  classes: number,
  width: number,
  epochs: number,
  l2: number,
): (s: Sparse) => number {
  const W = new Float32Array(width * classes)
  const G = new Float32Array(width * classes).fill(1e-8)
  const b = new Float32Array(classes)
  const lr = 0.5
  let seed = 7
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed / 2 ** 32
  }
  const order = Array.from(y, (_, i) => i)
  const z = new Float64Array(classes)
  for (let e = 0; e < epochs; e++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1))
      ;[order[i], order[j]] = [order[j] as number, order[i] as number]
    }
    for (const n of order) {
      const { idx, val } = x[n] as Sparse
      let max = -Infinity
      for (let c = 0; c < classes; c++) {
        let s = b[c] as number
        for (let k = 0; k < idx.length; k++)
          s += (W[(idx[k] as number) * classes + c] as number) * (val[k] as number)
        z[c] = s
        max = Math.max(max, s)
      }
      let sum = 0
      for (let c = 0; c < classes; c++) {
        z[c] = Math.exp((z[c] as number) - max)
        sum += z[c] as number
      }
      for (let c = 0; c < classes; c++) {
        const g = (z[c] as number) / sum - (c === y[n] ? 1 : 0)
        b[c] = (b[c] as number) - 0.05 * g
        for (let k = 0; k < idx.length; k++) {
          const at = (idx[k] as number) * classes + c
          const gw = g * (val[k] as number) + l2 * (W[at] as number)
          G[at] = (G[at] as number) + gw * gw
          W[at] = (W[at] as number) - (lr * gw) / Math.sqrt(G[at] as number)
        }
      }
    }
  }
  return (s: Sparse): number => {
    let best = 0
    let bestScore = -Infinity
    for (let c = 0; c < classes; c++) {
      let v = b[c] as number
      for (let k = 0; k < s.idx.length; k++)
        v += (W[(s.idx[k] as number) * classes + c] as number) * (s.val[k] as number)
      if (v > bestScore) {
        bestScore = v
        best = c
      }
    }
    return best
  }
}
