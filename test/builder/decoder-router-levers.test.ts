/**
 * The router levers on a decoder with a KV cache (issue 14), built on the LM zoo: a feature list, the bag of
 * tokens over the decoder's own `input_ids` / `attention_mask` (`router.token_inputs`: the LM recipe has no
 * tokenizer block) and `router.mlp_temperature`. The build's verification runs the embedded router on held-out
 * prompts against the router as trained on the host; the routed prefill's mix then drives decode steps on the
 * cache (where the mask is longer than the new ids: the router, bag included, must not run there); and the
 * temperature only softens the mix: softmax(z / 2) is softmax(z) square-rooted and renormalised.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildPackage, createReporter } from '@twinserve/gpu-runner/build'
import { ort } from '@twinserve/gpu-runner/runtime'
import { encodeControls, type RowControls } from '@twinserve/gpu-runner/twin-contract'
import { TWIN_OUTPUT_WEIGHTS } from '@twinserve/shared'
import { lmZooPath } from '@twinserve/zoo/lm'
import { afterAll, describe, expect, it } from 'vitest'

const root = await mkdtemp(join(tmpdir(), 'twinserve-lm-levers-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const EXPERTS = ['emails', 'names'] as const
const FEATURES = ['/blocks.1/Add_2_output_0', '/Reshape_output_0']
const LAYERS = 3
/** The two domains' routing prompts (prefill ids, past left out). */
const lines = (await readFile(lmZooPath('data', 'routing.jsonl'), 'utf8')).split('\n')
const mine = lines.filter((l) => EXPERTS.some((e) => l.startsWith(`{"expert":"${e}"`)))
const data = join(root, 'routing.jsonl')
await writeFile(data, `${mine.join('\n')}\n`)

async function build(name: string, router: Record<string, unknown>) {
  const recipe = join(root, `${name}.json`)
  await writeFile(
    recipe,
    JSON.stringify({
      name,
      base: lmZooPath('models', 'base.onnx'),
      experts: EXPERTS.map((e) => ({
        name: e,
        model: lmZooPath('models', 'experts', `${e}.onnx`),
      })),
      shared_file: false,
      // One matrix of exclusive knowledge (block 2's fc_out) keeps each build to seconds; the last hidden
      // state depends on it, so the router reads a copy of the shared layers, block 1's output does not.
      exclusive: { rank: 2, include: ['onnx::MatMul_424'] },
      router: {
        data,
        max_per_expert: 30,
        epochs: 4,
        hidden: [16],
        feature: FEATURES,
        bag_of_tokens: true,
        token_inputs: { vocab: 2048 },
        seed: 3,
        ...router,
      },
      verify: { examples_per_expert: 3 },
    }),
  )
  const out = join(root, name)
  return {
    out,
    report: await buildPackage(recipe, { out, reporter: createReporter({ quiet: true }) }),
  }
}

const int64 = (ids: readonly number[], dims: number[]) =>
  new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), dims)

function feeds(ids: number[], past: number, cache: ort.Tensor[] | undefined, row: RowControls) {
  const total = past + ids.length
  const f: Record<string, ort.Tensor> = {
    input_ids: int64(ids, [1, ids.length]),
    attention_mask: int64(Array(total).fill(1), [1, total]),
    position_ids: int64(
      ids.map((_, i) => past + i),
      [1, ids.length],
    ),
    ...encodeControls([row], EXPERTS.length),
  }
  for (let i = 0; i < LAYERS; i++)
    for (const [k, kv] of ['key', 'value'].entries())
      f[`past_key_values.${i}.${kv}`] =
        cache?.[2 * i + k] ?? new ort.Tensor('float32', new Float32Array(0), [1, 4, 0, 32])
  return f
}

const presents = (out: ort.InferenceSession.OnnxValueMapType) =>
  Array.from({ length: LAYERS }, (_, i) =>
    ['key', 'value'].map((kv) => out[`present.${i}.${kv}`] as ort.Tensor),
  ).flat()

const PROMPTS = mine
  .filter((_, i) => i % 40 === 0)
  .map((l) => (JSON.parse(l) as { inputs: { input_ids: number[] } }).inputs.input_ids)

async function routedWeights(out: string): Promise<number[][]> {
  const s = await ort.InferenceSession.create(join(out, 'model.onnx'))
  try {
    const w: number[][] = []
    for (const ids of PROMPTS) {
      const o = await s.run(feeds(ids, 0, undefined, { useRouter: 1 }))
      w.push([...((o[TWIN_OUTPUT_WEIGHTS] as ort.Tensor).data as Float32Array)])
    }
    return w
  } finally {
    await s.release()
  }
}

describe('router levers on a decoder with past key/values', async () => {
  const sharp = await build('sharp', {})
  const soft = await build('soft', { mlp_temperature: 2 })

  it('embeds the router it trained: two features and the bag of the decoder ids', () => {
    for (const { report } of [sharp, soft]) {
      expect(report.manifest.router).toMatchObject({
        features: FEATURES,
        bagOfTokens: true,
        featureSize: 128 + 128 + 2048,
      })
      expect(report.verification.routerAgreement).toBe(1)
      expect(report.verification.routerSumError).toBeLessThan(1e-4)
    }
  })

  it('holds the routed prefill mix through decode steps on the cache (the router does not run there)', async () => {
    const s = await ort.InferenceSession.create(join(sharp.out, 'model.onnx'))
    try {
      const ids = PROMPTS[0] as number[]
      const pre = await s.run(feeds(ids, 0, undefined, { useRouter: 1 }))
      const mix = [...((pre[TWIN_OUTPUT_WEIGHTS] as ort.Tensor).data as Float32Array)]
      const next = [...ids, 17, 29]
      let cache = presents(pre)
      let last: Float32Array | undefined
      for (const [k, id] of [17, 29].entries()) {
        const step = await s.run(feeds([id], ids.length + k, cache, { mixWeights: mix }))
        cache = presents(step)
        last = (step.logits as ort.Tensor).data as Float32Array
      }
      // The whole sequence in one pass with that mix: its last position is the last decode step's.
      const whole = await s.run(feeds(next, 0, undefined, { mixWeights: mix }))
      const all = (whole.logits as ort.Tensor).data as Float32Array
      const want = all.subarray(all.length - 2048)
      let diff = 0
      for (let i = 0; i < 2048; i++)
        diff = Math.max(diff, Math.abs((want[i] as number) - ((last as Float32Array)[i] as number)))
      expect(diff).toBeLessThan(1e-3)
    } finally {
      await s.release()
    }
  })

  it('mlp_temperature 2 square-roots the mix (same argmax, softer weights)', async () => {
    const a = await routedWeights(sharp.out)
    const b = await routedWeights(soft.out)
    let maxDiff = 0
    let softer = 0
    a.forEach((w, i) => {
      const r = w.map(Math.sqrt)
      const z = r.reduce((x, y) => x + y, 0)
      r.forEach((v, j) => {
        maxDiff = Math.max(maxDiff, Math.abs(v / z - (b[i]?.[j] as number)))
      })
      if (Math.max(...(b[i] as number[])) < Math.max(...w) - 1e-6) softer++
    })
    expect(maxDiff).toBeLessThan(1e-4)
    expect(softer).toBeGreaterThan(0)
  })
})
