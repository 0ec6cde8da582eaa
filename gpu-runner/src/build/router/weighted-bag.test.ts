/**
 * The weighted bag of tokens in the graph (recipe `bag_weighting`, `bag_bigrams`; issue #13) against the host's
 * `bagOfTokens`: a router whose only first-layer rows are the identity on the bag's columns gives logits equal to
 * the bag itself, so the embedded router's log-probability differences are the bag's differences, per column.
 * Checked at the opset the text zoo exports (14) and at opset 9 (attribute forms of Slice, Unsqueeze, ReduceSum);
 * and `router.sharpness` scales those differences. Checked pair buckets (`bag_bigrams_checked`) and float16 storage
 * (`router.dtype`) too.
 */
import { describe, expect, it } from 'vitest'
import { valueInfo } from '../../onnx/graph-builder.ts'
import { type IGraphProto, onnx } from '../../onnx/proto.ts'
import { openSession, ort } from '../../runtime/ort-session.ts'
import { GraphEditor } from '../graph/graph-editor.ts'
import { Ops } from '../graph/ops.ts'
import { type BagSpec, bagOfTokens, fitBagIdf, fitPairOwners } from './features.ts'
import { routerEmitter } from './router-graph.ts'

const VOCAB = 7
const BIGRAMS = 5
/** Right-padded rows: repeats (counts above 1), a pair that repeats, one token, an empty row. */
const ROWS = [
  [2, 5, 5, 6, 5, 5, 3, 0],
  [2, 1, 4, 1, 4, 1, 4, 3],
  [2, 6, 3, 0, 0, 0, 0, 0],
  [0, 0, 0, 0, 0, 0, 0, 0],
]
const examples = ROWS.map((ids) => ({
  expert: 0,
  inputs: { ids, mask: ids.map((id) => (id === 0 ? 0 : 1)) },
}))

function identityRouter(bag: BagSpec, sharpness?: number, dtype?: 'float16') {
  const width = bag.vocab + bag.bigrams
  const d = 1 + width // one dense feature column (weight 0), then the bag
  const weight = new Float32Array(d * width)
  for (let j = 0; j < width; j++) weight[(1 + j) * width + j] = 1
  return routerEmitter({
    kind: 'mlp',
    standardizer: { mean: new Float32Array(d), std: new Float32Array(d).fill(1) },
    mlp: { sizes: [d, width], layers: [{ weight, bias: new Float32Array(width) }] },
    bag,
    ...(sharpness !== undefined ? { sharpness } : {}),
    ...(dtype ? { dtype } : {}),
  })
}

async function graphBag(
  bag: BagSpec,
  opset: number,
  sharpness?: number,
  dtype?: 'float16',
): Promise<{ probs: Float32Array; graph: IGraphProto }> {
  const graph: IGraphProto = {
    name: 'bag',
    node: [],
    initializer: [],
    input: [
      valueInfo('ids', 'int64', ['batch', 'seq']),
      valueInfo('mask', 'int64', ['batch', 'seq']),
      valueInfo('feature', 'float', ['batch', 1]),
    ],
    output: [],
  }
  const editor = new GraphEditor(graph)
  const probs = identityRouter(bag, sharpness, dtype)(editor, new Ops(editor, opset), 'feature', {
    ids: 'ids',
    mask: 'mask',
  })
  graph.output = [valueInfo(probs, 'float', ['batch', bag.vocab + bag.bigrams])]
  const model = onnx.ModelProto.encode({
    irVersion: 7,
    opsetImport: [{ domain: '', version: opset }],
    graph,
  }).finish()
  const { session } = await openSession(model, { provider: 'cpu' })
  try {
    const n = ROWS.length
    const seq = ROWS[0]?.length ?? 0
    const flat = (key: 'ids' | 'mask') =>
      BigInt64Array.from(
        examples.flatMap((e) => e.inputs[key]),
        BigInt,
      )
    const out = await session.run({
      ids: new ort.Tensor('int64', flat('ids'), [n, seq]),
      mask: new ort.Tensor('int64', flat('mask'), [n, seq]),
      feature: new ort.Tensor('float32', new Float32Array(n), [n, 1]),
    })
    return { probs: out[probs]?.data as Float32Array, graph }
  } finally {
    await session.release()
  }
}

describe('weighted bag of tokens in the graph', () => {
  const base = { ids: 'ids', mask: 'mask', vocab: VOCAB }
  const tfidf = { ...base, bigrams: BIGRAMS, weighting: 'tfidf' as const }
  // Checked buckets (recipe `bag_bigrams_checked`, text-bigram): the idf is fitted over the owned pairs only.
  const owners = fitPairOwners(examples, tfidf)
  const checked = { ...tfidf, owners }
  const specs: (BagSpec & { ids: string; mask: string })[] = [
    { ...tfidf, idf: fitBagIdf(examples, tfidf) },
    { ...base, bigrams: 0, weighting: 'tfidf', idf: fitBagIdf(examples, { ...tfidf, bigrams: 0 }) },
    { ...base, bigrams: BIGRAMS, weighting: 'mean' },
    { ...checked, idf: fitBagIdf(examples, checked) },
    { ...base, bigrams: BIGRAMS, weighting: 'mean', owners },
  ]

  it('gives each pair bucket its most frequent pair (ties: the smaller id), as ⌊pair / H⌋', () => {
    // Pair ids a·7 + b of the rows: 19, 40 ×2, 41, 47, 38 | 15, 11 ×3, 29 ×2, 31 | 20, 45. Mod 5: bucket 0 holds
    // 40 (twice) over 15, 20, 45; 1: 11 (3×) over 41, 31; 2: 47; 3: 38; 4: 29 (twice) over 19.
    expect([...owners]).toEqual([8, 2, 9, 7, 5])
    // With more buckets than pair ids nothing collides: each seen pair owns its bucket (quotient 0), the rest
    // stay empty (−1). A tie goes to the smaller pair id.
    const wide = fitPairOwners(examples, { ...tfidf, bigrams: 50 })
    const seen = [19, 40, 41, 47, 38, 15, 11, 29, 31, 20, 45]
    expect([...wide].map((q, b) => (seen.includes(b) ? q === 0 : q === -1)).every(Boolean)).toBe(
      true,
    )
    const tie = [{ expert: 0, inputs: { ids: [5, 0, 2, 1], mask: [1, 1, 1, 1] } }]
    // Pairs 35 (5,0), 2 (0,2), 15 (2,1), all in bucket 0 of 1: 2 wins, quotient 2.
    expect([...fitPairOwners(tie, { ...tfidf, bigrams: 1 })]).toEqual([2])
  })

  it("counts a pair only in its own bucket: another pair hashed there is left out of the host's bag", () => {
    const spec = specs[3] as (typeof specs)[number]
    const width = VOCAB + BIGRAMS
    const row = bagOfTokens(examples, spec).subarray(width, 2 * width) // row 1: pairs 15, 11 ×3, 29 ×2, 31
    // Owned: 11 (bucket 1) and 29 (bucket 4); 15 (bucket 0 is 40's) and 31 (bucket 1 is 11's) are out.
    expect(row[VOCAB] ?? 0).toBe(0)
    expect(row[VOCAB + 2] ?? 0).toBe(0)
    expect(row[VOCAB + 3] ?? 0).toBe(0)
    const idf = spec.idf as Float32Array
    expect((row[VOCAB + 1] as number) / (row[VOCAB + 4] as number)).toBeCloseTo(
      ((1 + Math.log(3)) * (idf[VOCAB + 1] as number)) /
        ((1 + Math.log(2)) * (idf[VOCAB + 4] as number)),
      5,
    )
  })

  it('stores the bag rows and idf as float16 under router.dtype float16, matching the host to rounding', async () => {
    const spec = specs[3] as (typeof specs)[number]
    const width = spec.vocab + spec.bigrams
    const host = bagOfTokens(examples, spec)
    const { probs, graph } = await graphBag(spec, 14, undefined, 'float16')
    const bagInits = (graph.initializer ?? []).filter((t) => /bag\.(weight|idf)/.test(t.name ?? ''))
    expect(bagInits.map((t) => t.dataType)).toEqual([
      onnx.TensorProto.DataType.FLOAT16,
      onnx.TensorProto.DataType.FLOAT16,
    ])
    const ownerInit = (graph.initializer ?? []).find((t) => /pair_owners/.test(t.name ?? ''))
    expect(ownerInit?.dataType).toBe(onnx.TensorProto.DataType.INT16)
    for (let r = 0; r < ROWS.length; r++)
      for (let k = 1; k < width; k++) {
        const got = Math.log(probs[r * width + k] as number) - Math.log(probs[r * width] as number)
        const want = (host[r * width + k] as number) - (host[r * width] as number)
        expect(Math.abs(got - want)).toBeLessThan(2e-3)
      }
  })

  it('computes tf-idf by hand: sublinear counts times idf, unit norm, pairs hashed', () => {
    const spec = specs[0] as (typeof specs)[number]
    const width = VOCAB + BIGRAMS
    const row = bagOfTokens(examples, spec).subarray(0, width)
    const idf = spec.idf as Float32Array
    // Row 0: ids 2, 5×4, 6, 3; pairs (2,5) (5,5)×2 (5,6) (6,5) (5,3) → keys vocab + (a·7 + b) mod 5.
    const key = (a: number, b: number) => VOCAB + ((a * VOCAB + b) % BIGRAMS)
    const raw = new Map<number, number>()
    const add = (k: number, c: number) => raw.set(k, (raw.get(k) ?? 0) + c)
    for (const [id, c] of [
      [2, 1],
      [5, 4],
      [6, 1],
      [3, 1],
    ] as const)
      add(id, c)
    for (const [a, b] of [
      [2, 5],
      [5, 5],
      [5, 5],
      [5, 6],
      [6, 5],
      [5, 3],
    ] as const)
      add(key(a, b), 1)
    const v = new Map([...raw].map(([k, c]) => [k, (1 + Math.log(c)) * (idf[k] as number)]))
    const norm = Math.sqrt([...v.values()].reduce((a, x) => a + x * x, 0))
    for (let k = 0; k < width; k++) expect(row[k]).toBeCloseTo((v.get(k) ?? 0) / norm, 6)
    // The empty row's bag is zero, not NaN.
    expect([...bagOfTokens(examples, spec).subarray(3 * width)].every((x) => x === 0)).toBe(true)
  })

  for (const opset of [9, 14])
    it(`matches the host's bag at opset ${opset} (tf-idf with and without pairs, mean with pairs, checked pairs)`, async () => {
      for (const spec of specs) {
        const width = spec.vocab + spec.bigrams
        const host = bagOfTokens(examples, spec)
        const { probs } = await graphBag(spec, opset)
        for (let r = 0; r < ROWS.length; r++)
          for (let k = 1; k < width; k++) {
            const graph =
              Math.log(probs[r * width + k] as number) - Math.log(probs[r * width] as number)
            const want = (host[r * width + k] as number) - (host[r * width] as number)
            expect(Math.abs(graph - want)).toBeLessThan(1e-5)
          }
      }
    })

  it('multiplies the logits by router.sharpness before the softmax', async () => {
    const spec = specs[0] as (typeof specs)[number]
    const width = spec.vocab + spec.bigrams
    const host = bagOfTokens(examples, spec)
    const { probs } = await graphBag(spec, 14, 3)
    for (let k = 1; k < width; k++) {
      const graph = Math.log(probs[k] as number) - Math.log(probs[0] as number)
      expect(Math.abs(graph - 3 * ((host[k] as number) - (host[0] as number)))).toBeLessThan(1e-5)
    }
  })
})
