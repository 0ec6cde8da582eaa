/**
 * The text zoo (zoo/text: a 3-layer encoder MLM-pretrained and fine-tuned into six classifiers in PyTorch, exported
 * by torch.onnx.export at its default opset) builds into a twin package with `twinserve build`, from its own raw
 * routing texts (the builder tokenizes them with the recipe's tokenizer, the runner's code), and a one-hot mix of each expert reproduces that expert's PyTorch
 * logits on the zoo's reference texts (relative error < 1e-3, full-rank factors).
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildPackage, createReporter } from '@twinserve/gpu-runner/build'
import { ort } from '@twinserve/gpu-runner/runtime'
import { encodeControls } from '@twinserve/gpu-runner/twin-contract'
import { readTextZoo, textRoutingPath, textZooPath } from '@twinserve/zoo/text'
import { afterAll, describe, expect, it } from 'vitest'

const zoo = readTextZoo()
const root = await mkdtemp(join(tmpdir(), 'twinserve-text-zoo-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const TASKS = zoo.tasks.map((t) => t.name)

interface Reference {
  input_ids: number[][]
  attention_mask: number[][]
  logits: Record<string, number[][]>
}

describe('twinserve build on the text zoo', async () => {
  // The routing data as committed (raw text): the builder tokenizes it with the recipe's tokenizer.
  const recipe = join(root, 'recipe.json')
  await writeFile(
    recipe,
    JSON.stringify({
      name: 'text-zoo',
      base: textZooPath(zoo, 'base.onnx'),
      experts: TASKS.map((t) => ({ name: t, model: textZooPath(zoo, `experts/${t}.onnx`) })),
      exclusive: { energy: 1 },
      tokenizer: {
        file: textZooPath(zoo, zoo.tokenizer.file),
        config: textZooPath(zoo, zoo.tokenizer.config),
        max_length: zoo.tokenizer.max_length,
        pad_id: zoo.tokenizer.pad_id,
      },
      router: { data: textRoutingPath(zoo), max_per_expert: 30, epochs: 5 },
      verify: { examples_per_expert: 2 },
    }),
  )
  const out = join(root, 'pkg')
  const report = await buildPackage(recipe, { out, reporter: createReporter({ quiet: true }) })

  it('corrects every weight, the token embedding included', () => {
    expect(report.graph.opset).toBe(14)
    expect(report.exclusive.find((r) => r.name === 'tok.weight')?.kind).toBe('matrix')
    const { train, validation, heldout } = report.router.examples
    expect(train + validation + heldout).toBe(30 * TASKS.length)
    expect(report.manifest.tokenizer?.file).toBe('tokenizer/tokenizer.json')
  })

  it("reproduces each expert's PyTorch logits on the reference texts under a one-hot mix", async () => {
    const ref = JSON.parse(readFileSync(textZooPath(zoo, 'reference.json'), 'utf8')) as Reference
    const B = ref.input_ids.length
    const int64 = (rows: number[][]) =>
      new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [
        rows.length,
        rows[0]?.length ?? 0,
      ])
    const feeds = { input_ids: int64(ref.input_ids), attention_mask: int64(ref.attention_mask) }
    const twin = await ort.InferenceSession.create(join(out, 'model.onnx'))
    try {
      for (const [t, task] of TASKS.entries()) {
        const mixWeights = TASKS.map((_, j) => (j === t ? 1 : 0))
        const got = (
          await twin.run({
            ...feeds,
            ...encodeControls(Array(B).fill({ mixWeights }), TASKS.length),
          })
        ).logits?.data as Float32Array
        const expected = (ref.logits[task] ?? []).flat()
        let diff = 0
        let scale = 0
        expected.forEach((y, i) => {
          diff = Math.max(diff, Math.abs((got[i] ?? 0) - y))
          scale = Math.max(scale, Math.abs(y))
        })
        expect(diff / scale, task).toBeLessThan(1e-3)
      }
    } finally {
      await twin.release()
    }
  })
})

describe('twinserve build refuses text recipes it cannot serve', () => {
  const recipe = (extra: Record<string, unknown>, base = textZooPath(zoo, 'base.onnx')) => ({
    name: 'text-bad',
    base,
    experts: TASKS.slice(0, 2).map((t) => ({
      name: t,
      model: textZooPath(zoo, `experts/${t}.onnx`),
    })),
    exclusive: { rank: 2 },
    tokenizer: {
      file: textZooPath(zoo, zoo.tokenizer.file),
      max_length: zoo.tokenizer.max_length,
      pad_id: zoo.tokenizer.pad_id,
    },
    router: { data: textRoutingPath(zoo), max_per_expert: 5 },
    ...extra,
  })
  const refused = async (name: string, r: Record<string, unknown>, message: RegExp) => {
    const path = join(root, `${name}.json`)
    await writeFile(path, JSON.stringify(r))
    await expect(
      buildPackage(path, { out: join(root, name), reporter: createReporter({ quiet: true }) }),
    ).rejects.toThrow(message)
  }

  it('more labels than the model has class scores', () =>
    refused(
      'labels',
      recipe({
        experts: TASKS.slice(0, 2).map((t, i) => ({
          name: t,
          model: textZooPath(zoo, `experts/${t}.onnx`),
          ...(i === 1 ? { labels: ['a', 'b', 'c', 'd', 'e'] } : {}),
        })),
      }),
      /experts\.1\.labels: expert '\S+' has 5 labels, but no float output .* k ≥ 5 class scores \(outputs: logits \[batch, 4\]\)/,
    ))

  it('a tokenizer naming inputs the model does not have', () =>
    refused(
      'inputs',
      recipe({
        tokenizer: {
          file: textZooPath(zoo, zoo.tokenizer.file),
          max_length: 64,
          pad_id: 0,
          ids_input: 'ids',
        },
      }),
      /recipe tokenizer: the base model's inputs are input_ids, attention_mask; a tokenizer feeds exactly ids and attention_mask/,
    ))

  it('a tokenizer file that is missing', () =>
    refused(
      'missing',
      recipe({ tokenizer: { file: join(root, 'nope.json'), max_length: 64, pad_id: 0 } }),
      /recipe tokenizer\.file .*nope\.json: file not found/,
    ))
})
