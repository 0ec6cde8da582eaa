/**
 * Diagonal Fisher information of the Fashion zoo's MLP experts, for Fisher merging (Matena & Raffel 2022) in the
 * RegMean report (regmean-arms.ts). A reference implementation on this MLP only: per example x of the expert's
 * routing examples (the first `perExpert` in the file, training images), y is sampled from the expert's own
 * p(y|x) (seeded), the gradient of −log p_y w.r.t. every parameter comes from the trainer's gradient graph at batch
 * 1 (MlpSessions.lossAndGradients: the mean cross-entropy of one row is −log p_y), and its square is averaged.
 * `twinserve build` has no such gradients for arbitrary graphs, so Fisher merging is a benchmark arm, not a recipe
 * method.
 * @see https://arxiv.org/abs/2111.09832
 * @module
 */
import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { tensorDims } from '@twinserve/gpu-runner/build'
import { createRng } from '@twinserve/gpu-runner/merge'
import { layerParamNames, MlpSessions, type MlpWeights } from '@twinserve/gpu-runner/train'
import type { ZooModels } from './zoo-models.ts'

/** The first `perExpert` routing examples of each expert (by name), their pixels. */
async function routingPixels(
  path: string,
  names: readonly string[],
  perExpert: number,
): Promise<Float32Array[][]> {
  const out = names.map(() => [] as Float32Array[])
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }) })
  for await (const line of lines) {
    if (!line.trim()) continue
    const ex = JSON.parse(line) as { expert: string; inputs: { pixels: number[] } }
    const i = names.indexOf(ex.expert)
    const list = out[i]
    if (list && list.length < perExpert) list.push(Float32Array.from(ex.inputs.pixels))
    if (out.every((l) => l.length >= perExpert)) break
  }
  lines.close()
  return out
}

/** Each expert's diagonal Fisher, by parameter name (fcN.weight / fcN.bias). */
export async function mlpFisher(
  z: ZooModels,
  routingPath: string,
  perExpert = 256,
  seed = 0,
): Promise<Map<string, Float32Array>[]> {
  const sizes: number[] = []
  for (let i = 0; ; i++) {
    const t = z.base.initializers.get(layerParamNames(i).weight)
    if (!t) break
    const [dIn, dOut] = tensorDims(t) as [number, number]
    if (i === 0) sizes.push(dIn)
    sizes.push(dOut)
  }
  const pixels = await routingPixels(routingPath, z.names, perExpert)
  const sessions = await MlpSessions.open(sizes)
  const classes = sizes.at(-1) as number
  try {
    const out: Map<string, Float32Array>[] = []
    for (const [e, values] of z.experts.entries()) {
      const w: MlpWeights = {
        sizes,
        layers: sizes.slice(1).map((_, i) => ({
          weight: values.get(layerParamNames(i).weight) as Float32Array,
          bias: values.get(layerParamNames(i).bias) as Float32Array,
        })),
      }
      const sums = w.layers.map((l) => ({
        weight: new Float64Array(l.weight.length),
        bias: new Float64Array(l.bias.length),
      }))
      const rng = createRng(seed, 'fisher', z.names[e] ?? String(e))
      const xs = pixels[e] ?? []
      for (const x of xs) {
        const logits = await sessions.logits(w, x)
        const max = Math.max(...logits)
        const p = Array.from(logits, (v) => Math.exp(v - max))
        const total = p.reduce((a, b) => a + b, 0)
        let u = rng.uniform() * total
        let y = 0
        while (y < classes - 1 && u >= (p[y] as number)) u -= p[y++] as number
        const target = new Float32Array(classes)
        target[y] = 1
        const { grads } = await sessions.lossAndGradients(w, x, target)
        grads.forEach((g, i) => {
          const s = sums[i] as { weight: Float64Array; bias: Float64Array }
          for (let j = 0; j < g.weight.length; j++)
            s.weight[j] = (s.weight[j] as number) + (g.weight[j] as number) ** 2
          for (let j = 0; j < g.bias.length; j++)
            s.bias[j] = (s.bias[j] as number) + (g.bias[j] as number) ** 2
        })
      }
      const fisher = new Map<string, Float32Array>()
      sums.forEach((s, i) => {
        const p = layerParamNames(i)
        fisher.set(
          p.weight,
          Float32Array.from(s.weight, (v) => v / xs.length),
        )
        fisher.set(
          p.bias,
          Float32Array.from(s.bias, (v) => v / xs.length),
        )
      })
      out.push(fisher)
    }
    return out
  } finally {
    await sessions.release()
  }
}
