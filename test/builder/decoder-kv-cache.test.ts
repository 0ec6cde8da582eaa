/**
 * `twinserve build` on a decoder with a KV cache (issue 14's build part): the LM zoo's GPT-style decoder, exported by
 * torch.onnx.export in the Hugging Face layout (`past_key_values.N.key/value` in, `present.N.*` out,
 * `attention_mask`, `position_ids`), built from its prompt routing data (past left out, fed empty as at prefill).
 * The corrections act on every step's projections and the batch of the cache is tracked: a left-padded batch whose
 * rows hold different one-hot mixes reproduces each row's expert at prefill and at every decode step through the
 * twin graph's own cache, to a relative error below 1e-3 (full-rank factors).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildPackage, createReporter } from '@twinserve/gpu-runner/build'
import { ort } from '@twinserve/gpu-runner/runtime'
import { encodeControls, type RowControls } from '@twinserve/gpu-runner/twin-contract'
import { lmZooPath } from '@twinserve/zoo/lm'
import { afterAll, describe, expect, it } from 'vitest'

const root = await mkdtemp(join(tmpdir(), 'twinserve-kv-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const EXPERTS = ['emails', 'names'] as const
const LAYERS = 3

type Feeds = Record<string, ort.Tensor>
const int64 = (rows: number[][]) =>
  new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [
    rows.length,
    rows[0]?.length ?? 0,
  ])

/** One step's feeds: ids and positions [B, S], mask [B, past + S], the cache (empty at prefill). */
function stepFeeds(ids: number[][], mask: number[][], cache: ort.Tensor[] | undefined): Feeds {
  const positions = mask.map((row) => {
    let kept = 0
    const pos = row.map((m) => {
      kept += m
      return Math.max(0, kept - 1)
    })
    return pos.slice(row.length - (ids[0]?.length ?? 0))
  })
  const feeds: Feeds = {
    input_ids: int64(ids),
    attention_mask: int64(mask),
    position_ids: int64(positions),
  }
  for (let i = 0; i < LAYERS; i++)
    for (const [k, kv] of ['key', 'value'].entries())
      feeds[`past_key_values.${i}.${kv}`] =
        cache?.[2 * i + k] ?? new ort.Tensor('float32', new Float32Array(0), [ids.length, 4, 0, 32])
  return feeds
}

async function run(s: ort.InferenceSession, feeds: Feeds) {
  const out = await s.run(feeds)
  const cache = Array.from({ length: LAYERS }, (_, i) =>
    ['key', 'value'].map((kv) => out[`present.${i}.${kv}`] as ort.Tensor),
  ).flat()
  return { logits: out.logits as ort.Tensor, cache }
}

/** Row b of a [B, ...] tensor's data. */
function rowOf(t: ort.Tensor, b: number): Float32Array {
  const per = (t.data as Float32Array).length / (t.dims[0] ?? 1)
  return (t.data as Float32Array).subarray(b * per, (b + 1) * per)
}

function relErr(a: Float32Array, b: Float32Array): number {
  let d = 0
  let s = 0
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs((a[i] ?? 0) - (b[i] ?? 0)))
    s = Math.max(s, Math.abs(b[i] ?? 0))
  }
  return d / s
}

describe('twinserve build on a decoder with past key/values', async () => {
  const lines = (await readFile(lmZooPath('data', 'routing.jsonl'), 'utf8')).split('\n')
  const mine = lines.filter((l) => EXPERTS.some((e) => l.startsWith(`{"expert":"${e}"`)))
  const data = join(root, 'routing.jsonl')
  await writeFile(data, `${mine.join('\n')}\n`)
  const recipe = join(root, 'recipe.json')
  await writeFile(
    recipe,
    JSON.stringify({
      name: 'lm-kv',
      base: lmZooPath('models', 'base.onnx'),
      experts: EXPERTS.map((e) => ({
        name: e,
        model: lmZooPath('models', 'experts', `${e}.onnx`),
      })),
      exclusive: { energy: 1 },
      router: { data, max_per_expert: 40, epochs: 3 },
      verify: { examples_per_expert: 2 },
    }),
  )
  const out = join(root, 'pkg')
  const report = await buildPackage(recipe, { out, reporter: createReporter({ quiet: true }) })

  it('builds from prompts with the cache left out, verified against each expert at prefill', () => {
    for (const e of report.verification.experts)
      expect(e.oneHotMaxAbsDiff, e.name).toBeLessThan(1e-3 * e.sharedMaxAbsDiff + 1e-3)
    expect(report.manifest.inputs.map((i) => i.name)).toContain('past_key_values.0.key')
  })

  it('rows with different one-hot mixes follow their own expert through prefill and decode steps', async () => {
    const prompt = (i: number) =>
      (JSON.parse(mine[i] ?? '') as { inputs: { input_ids: number[] } }).inputs.input_ids
    const [a, b] = [prompt(0), prompt(mine.length - 1)]
    const width = Math.max(a.length, b.length)
    const pad = (p: number[]) => [...Array<number>(width - p.length).fill(0), ...p]
    let mask = [a, b].map((p) => [...Array<number>(width - p.length).fill(0), ...p.map(() => 1)])
    let ids = [pad(a), pad(b)]
    const rows: RowControls[] = EXPERTS.map((_, t) => ({
      mixWeights: EXPERTS.map((_, j) => (j === t ? 1 : 0)),
    }))
    const controls = encodeControls(rows, EXPERTS.length)
    const twin = await ort.InferenceSession.create(join(out, 'model.onnx'))
    const experts = await Promise.all(
      EXPERTS.map((e) => ort.InferenceSession.create(lmZooPath('models', 'experts', `${e}.onnx`))),
    )
    let twinCache: ort.Tensor[] | undefined
    let expertCache: (ort.Tensor[] | undefined)[] = [undefined, undefined]
    for (let step = 0; step < 4; step++) {
      const t = await run(twin, { ...stepFeeds(ids, mask, twinCache), ...controls })
      const own = await Promise.all(
        experts.map((s, e) => run(s, stepFeeds(ids, mask, expertCache[e]))),
      )
      for (const e of [0, 1]) {
        const label = `row ${e} (${EXPERTS[e]}), step ${step}`
        expect(
          relErr(rowOf(t.logits, e), rowOf(own[e]?.logits as ort.Tensor, e)),
          label,
        ).toBeLessThan(1e-3)
        expect(
          relErr(rowOf(t.cache[5] as ort.Tensor, e), rowOf(own[e]?.cache[5] as ort.Tensor, e)),
          label,
        ).toBeLessThan(1e-3)
      }
      twinCache = t.cache
      expertCache = own.map((o) => o.cache)
      // Next tokens: fixed ids, one per row; the mask grows by one column.
      ids = [[10 + step], [20 + step]]
      mask = mask.map((r) => [...r, 1])
    }
    await twin.release()
    for (const s of experts) await s.release()
  })
})
