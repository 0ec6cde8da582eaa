/**
 * An ensemble of MLP routers as ONE MLP whose logits are the members' mean logits (recipe `router.ensemble`):
 * routers trained from different seeds disagree on the texts they find hard, and averaging their logits lowers
 * that seed-to-seed variance. Because the result is an ordinary MLP, the embedded router graph, the bag of tokens'
 * gathered first layer and float16 storage need nothing new.
 * - Linear members (no hidden layer): the mean of their weights and biases, exactly the mean logits, at one
 *   member's cost.
 * - Hidden layers: the members side by side: the first layer's columns concatenated, every later hidden layer
 *   block-diagonal (member i's units see only member i's units, so each member's ReLUs are its own), the last
 *   layer's rows stacked and divided by the number of members, its bias the mean. Width (and cost) is the sum.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { MlpLayer, MlpWeights } from '../../train/index.ts'

export function ensembleMlp(members: readonly MlpWeights[]): MlpWeights {
  const first = members[0]
  if (!first) throw new AppError('INVALID_REQUEST', 'an ensemble needs at least one member')
  for (const m of members)
    if (m.sizes.join() !== first.sizes.join())
      throw new AppError(
        'INVALID_REQUEST',
        `ensemble members differ in layer sizes: [${first.sizes}] and [${m.sizes}]`,
      )
  const n = members.length
  if (n === 1) return first
  const sizes = first.sizes
  const L = sizes.length - 1
  const mean = (arrays: readonly Float32Array[]) => {
    const out = new Float32Array((arrays[0] as Float32Array).length)
    for (const a of arrays)
      for (let k = 0; k < out.length; k++) out[k] = (out[k] as number) + (a[k] as number)
    return out.map((v) => v / n)
  }
  const layer = (m: MlpWeights, i: number) => m.layers[i] as MlpLayer
  if (L === 1)
    return {
      sizes: [...sizes],
      layers: [
        {
          weight: mean(members.map((m) => layer(m, 0).weight)),
          bias: mean(members.map((m) => layer(m, 0).bias)),
        },
      ],
    }
  const layers: MlpLayer[] = []
  for (let i = 0; i < L; i++) {
    const nIn = sizes[i] as number
    const nOut = sizes[i + 1] as number
    const last = i === L - 1
    // Rows (inputs) are shared by the first layer only; columns (outputs) by the last only.
    const inW = i === 0 ? nIn : n * nIn
    const outW = last ? nOut : n * nOut
    const weight = new Float32Array(inW * outW)
    members.forEach((m, s) => {
      const w = layer(m, i).weight
      const r0 = i === 0 ? 0 : s * nIn
      const c0 = last ? 0 : s * nOut
      for (let r = 0; r < nIn; r++)
        for (let c = 0; c < nOut; c++) {
          const at = (r0 + r) * outW + c0 + c
          weight[at] = (weight[at] as number) + (w[r * nOut + c] as number) / (last ? n : 1)
        }
    })
    const bias = last
      ? mean(members.map((m) => layer(m, i).bias))
      : Float32Array.from({ length: n * nOut }, (_, k) => {
          const b = layer(members[Math.floor(k / nOut)] as MlpWeights, i).bias
          return b[k % nOut] as number
        })
    layers.push({ weight, bias })
  }
  return {
    sizes: [sizes[0] as number, ...sizes.slice(1, -1).map((h) => n * h), sizes[L] as number],
    layers,
  }
}
