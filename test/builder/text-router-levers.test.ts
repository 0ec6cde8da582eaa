/**
 * The text router's levers (issue #13), built on the text zoo: `router.pooling: masked`, `router.feature` as a
 * list and `router.bag_of_tokens`. The build's own verification runs the embedded router on the held-out texts
 * against the router as trained on the host (features pooled and counted in TypeScript); here it must agree on
 * every one. And what masked pooling is for: a text's routing weights do not depend on how much padding follows
 * it (the plain mean does depend on it), which also shows the bag of tokens ignores padded positions.
 */

import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildPackage, createReporter } from '@twinserve/gpu-runner/build'
import { onnx } from '@twinserve/gpu-runner/onnx'
import { ort } from '@twinserve/gpu-runner/runtime'
import { TextTokenizer } from '@twinserve/gpu-runner/text'
import { encodeControls } from '@twinserve/gpu-runner/twin-contract'
import { TWIN_OUTPUT_WEIGHTS } from '@twinserve/shared'
import { readTextZoo, textRoutingPath, textZooPath } from '@twinserve/zoo/text'
import { afterAll, describe, expect, it } from 'vitest'

const zoo = readTextZoo()
const root = await mkdtemp(join(tmpdir(), 'twinserve-text-levers-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const TASKS = zoo.tasks.map((t) => t.name)
const FEATURES = ['/Add_output_0', '/blocks.0/Mul_1_output_0']
const TEXTS = ['Mary', 'horrible', 'Subject: cheap meds, order now', 'The committee adjourned.']

async function build(name: string, router: Record<string, unknown>) {
  const path = join(root, `${name}.json`)
  await writeFile(
    path,
    JSON.stringify({
      name,
      base: textZooPath(zoo, 'base.onnx'),
      experts: TASKS.map((t) => ({ name: t, model: textZooPath(zoo, `experts/${t}.onnx`) })),
      exclusive: { rank: 4 },
      tokenizer: {
        file: textZooPath(zoo, zoo.tokenizer.file),
        config: textZooPath(zoo, zoo.tokenizer.config),
        max_length: zoo.tokenizer.max_length,
        pad_id: zoo.tokenizer.pad_id,
      },
      router: {
        data: textRoutingPath(zoo),
        max_per_expert: 40,
        epochs: 8,
        hidden: [16],
        ...router,
      },
      verify: { examples_per_expert: 2 },
    }),
  )
  const out = join(root, name)
  return {
    out,
    report: await buildPackage(path, { out, reporter: createReporter({ quiet: true }) }),
  }
}

/** The router's weights for each text, fed alone at its own length and again right-padded to 64 tokens. */
async function weightsShortAndPadded(
  out: string,
): Promise<{ short: number[][]; padded: number[][] }> {
  const tok = TextTokenizer.fromJson(
    readFileSync(textZooPath(zoo, zoo.tokenizer.file)),
    readFileSync(textZooPath(zoo, zoo.tokenizer.config)),
    {
      maxLength: 64,
      padId: 0,
      truncation: true,
      idsInput: 'input_ids',
      maskInput: 'attention_mask',
    },
    'test',
  )
  const twin = await ort.InferenceSession.create(join(out, 'model.onnx'))
  const run = async (ids: number[]) => {
    const feeds = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
      attention_mask: new ort.Tensor(
        'int64',
        BigInt64Array.from(ids, (id) => (id === 0 ? 0n : 1n)),
        [1, ids.length],
      ),
      ...encodeControls([{ useRouter: 1 }], TASKS.length),
    }
    const w = (await twin.run(feeds))[TWIN_OUTPUT_WEIGHTS]
    if (!w) throw new Error(`the twin graph has no ${TWIN_OUTPUT_WEIGHTS} output`)
    return [...(w.data as Float32Array)]
  }
  const short: number[][] = []
  const padded: number[][] = []
  try {
    for (const text of TEXTS) {
      const ids = tok.encode(text, 'test')
      short.push(await run(ids))
      padded.push(await run([...ids, ...Array(64 - ids.length).fill(0)]))
    }
  } finally {
    await twin.release()
  }
  return { short, padded }
}

const maxDiff = (a: number[][], b: number[][]) =>
  Math.max(...a.flatMap((row, i) => row.map((v, j) => Math.abs(v - (b[i]?.[j] ?? 0)))))

describe('text router levers', async () => {
  const levers = await build('levers', {
    feature: FEATURES,
    pooling: 'masked',
    bag_of_tokens: true,
  })

  it('embeds the router it trained: features concatenated, masked pooling, bag of tokens', () => {
    const { manifest, verification } = levers.report
    expect(manifest.router).toMatchObject({
      feature: FEATURES[0],
      features: FEATURES,
      pooling: 'masked',
      bagOfTokens: true,
      // embeddings 64 + block 0 FFN 256 + the vocabulary (zoo/text/README.md: 5,000 pieces)
      featureSize: 64 + 256 + 5000,
    })
    expect(verification.routerAgreement).toBe(1)
    expect(verification.routerSumError).toBeLessThan(1e-4)
  })

  it('embeds a tf-idf bag with hashed token pairs exactly, whatever padding follows a text', async () => {
    const tfidf = await build('tfidf', {
      feature: FEATURES[0],
      pooling: 'masked',
      bag_of_tokens: true,
      bag_weighting: 'tfidf',
      bag_bigrams: 512,
    })
    const { manifest, verification } = tfidf.report
    expect(manifest.router).toMatchObject({
      bagOfTokens: true,
      bagWeighting: 'tfidf',
      bagBigrams: 512,
      featureSize: 64 + 5000 + 512,
    })
    // The host's bag (counted in TypeScript) and the graph's (Equal, Gather, int64 pair keys) route alike.
    expect(verification.routerAgreement).toBe(1)
    expect(verification.routerSumError).toBeLessThan(1e-4)
    const w = await weightsShortAndPadded(tfidf.out)
    expect(maxDiff(w.short, w.padded)).toBeLessThan(1e-4)
  })

  it('embeds checked pair buckets (router.bag_bigrams_checked) exactly and records them in the manifest', async () => {
    const checked = await build('checked', {
      feature: FEATURES[0],
      pooling: 'masked',
      bag_of_tokens: true,
      bag_weighting: 'tfidf',
      bag_bigrams: 509,
      bag_bigrams_checked: true,
    })
    const { manifest, verification } = checked.report
    expect(manifest.router).toMatchObject({
      bagBigrams: 509,
      bagBigramsChecked: true,
      featureSize: 64 + 5000 + 509,
    })
    // The host leaves a pair out unless it owns its bucket; the graph (Gather of the owners, Equal) must agree.
    expect(verification.routerAgreement).toBe(1)
    expect(verification.routerSumError).toBeLessThan(1e-4)
    const model = onnx.ModelProto.decode(readFileSync(join(checked.out, 'model.onnx')))
    const owners = (model.graph?.initializer ?? []).find((t) => /pair_owners/.test(t.name ?? ''))
    expect(owners?.dims?.map(Number)).toEqual([509])
    const w = await weightsShortAndPadded(checked.out)
    expect(maxDiff(w.short, w.padded)).toBeLessThan(1e-4)
  })

  it('embeds an ensemble of seeds (router.ensemble) as one router: linear members averaged, hidden side by side', async () => {
    for (const [name, hidden, widths] of [
      ['ensemble-linear', [], [[64, TASKS.length]]],
      [
        'ensemble-hidden',
        [16],
        [
          [64, 32],
          [32, TASKS.length],
        ],
      ],
    ] as const) {
      const built = await build(name, {
        feature: FEATURES[0],
        pooling: 'masked',
        hidden,
        ensemble: 2,
      })
      // The held-out predictions come from the mean of the two members' logits, computed apart from the merged
      // MLP; the embedded router must make the same pick on every held-out text.
      expect(built.report.verification.routerAgreement).toBe(1)
      expect(built.report.verification.routerSumError).toBeLessThan(1e-4)
      const model = onnx.ModelProto.decode(readFileSync(join(built.out, 'model.onnx')))
      const matrices = (model.graph?.initializer ?? [])
        .filter((t) => (t.name ?? '').startsWith('twin/router/') && t.dims?.length === 2)
        .map((t) => t.dims?.map(Number))
      // A linear ensemble is one linear router; hidden layers add up their widths (2 × 16).
      expect(matrices).toEqual(widths.map((w) => [...w]))
    }
  })

  it('routes a text the same whatever padding follows it (the plain mean does not)', async () => {
    const masked = await weightsShortAndPadded(levers.out)
    expect(maxDiff(masked.short, masked.padded)).toBeLessThan(1e-4)
    const plain = await build('plain', { feature: FEATURES[1] })
    expect(plain.report.manifest.router).not.toHaveProperty('pooling')
    const mean = await weightsShortAndPadded(plain.out)
    expect(maxDiff(mean.short, mean.padded)).toBeGreaterThan(1e-2)
  })
})
