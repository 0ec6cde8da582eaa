/**
 * bench:quality's LM perplexity under both protocols (issue 14): one pass gives each document's NLL over the whole
 * document (t ≥ 1) and over its continuation after the first n ids (t ≥ n, the conditional protocol), on real
 * zoo/lm documents and models. The whole sum is the prompt's part (the same document cut to n ids, scored alone)
 * plus the continuation's; a document of ≤ n ids has no continuation. The likelihood routing, batched as the
 * engine batches a step's prompts, gives the mixes one prompt at a time gives.
 */
import {
  DecoderGraph,
  LmProfile,
  likelihoodWeights,
  promptEvidence,
  readPromptBag,
  sureExpert,
} from '@twinserve/gpu-runner/generate'
import { loadPackage } from '@twinserve/gpu-runner/package'
import { controlsOf } from '@twinserve/gpu-runner/twin-contract'
import { lmZooPath } from '@twinserve/zoo/lm'
import { afterAll, describe, expect, it } from 'vitest'
import { openCpu } from '../../bench/quality/evaluate.ts'
import {
  continuationTokens,
  DEFAULT_PROMPT_IDS,
  documentNlls,
  documentSums,
  evaluatePerplexity,
  type LmDoc,
  loadLmSplits,
  routedMixes,
} from '../../bench/quality/lm-evaluate.ts'

const N = DEFAULT_PROMPT_IDS
const profile = await LmProfile.load(lmZooPath('models'))
const [emails, names] = loadLmSplits(profile, ['emails', 'names'], 'validation')
if (!emails || !names) throw new Error('zoo/lm validation splits missing')
const long = [...emails.docs.slice(0, 3), ...names.docs.slice(0, 2)].filter(
  (d) => d.ids.length > N + 5,
)
const docs: LmDoc[] = [
  ...long,
  // At and below the prompt's length: nothing left to score.
  { ids: (long[0] as LmDoc).ids.slice(0, N), promptIds: (long[0] as LmDoc).promptIds },
  { ids: (long[1] as LmDoc).ids.slice(0, 20), promptIds: (long[1] as LmDoc).promptIds },
]
const base = await openCpu(lmZooPath('models', 'base.onnx'))
afterAll(() => base.release())
const plain = new DecoderGraph(base, [], 0)

describe('the conditional perplexity (continuation after the first n ids) (#14)', () => {
  it('whole = prompt part + continuation, per document, from one pass', async () => {
    expect(long.length).toBeGreaterThanOrEqual(4)
    const sums = await documentSums(plain, docs, [], N)
    // The prompt's part scored on its own: the same documents cut to their first n ids.
    const prompts = await documentNlls(
      plain,
      docs.map((d) => ({ ...d, ids: d.ids.slice(0, N) })),
      [],
    )
    for (const [i, d] of docs.entries()) {
      const whole = sums.whole[i] as number
      const cont = sums.continuation[i] as number
      // float32 logits in passes padded differently: agreement to ~1e-5 relative; one token's NLL is ~1–10 nats.
      expect(Math.abs(whole - ((prompts[i] as number) + cont))).toBeLessThan(1e-4 * whole + 1e-3)
      if (d.ids.length <= N) expect(cont).toBe(0)
      else {
        expect(cont).toBeGreaterThan(0)
        expect(whole - cont).toBeGreaterThan(1)
      }
    }
    expect(await documentNlls(plain, docs, [])).toEqual(sums.whole)
  })

  it('n = 1 scores the whole document; the continuation is a tail of the same pass', async () => {
    const one = await documentSums(plain, docs, [], 1)
    for (const [i, w] of one.whole.entries()) expect(one.continuation[i]).toBeCloseTo(w, 9)
    // n = 2 drops exactly the first prediction (of the id after BOS).
    const two = await documentSums(plain, docs, [], 2)
    for (const [i, w] of two.whole.entries()) {
      expect(w).toBeCloseTo(one.whole[i] as number, 6)
      expect(w - (two.continuation[i] as number)).toBeGreaterThan(0)
    }
    await expect(documentSums(plain, docs, [], 0)).rejects.toThrow(/positive integer/)
  })

  it('counts the continuation ids and reports a domain without any as NaN', async () => {
    expect(continuationTokens(docs, N)).toBe(long.reduce((n, d) => n + d.ids.length - N, 0))
    const short = docs.filter((d) => d.ids.length <= N)
    const r = await evaluatePerplexity(
      base,
      [
        { name: 'long', docs: long, tokens: long.reduce((n, d) => n + d.ids.length - 1, 0) },
        { name: 'short', docs: short, tokens: short.reduce((n, d) => n + d.ids.length - 1, 0) },
      ],
      undefined,
      N,
    )
    const sums = await documentSums(plain, long, [], N)
    const total = sums.continuation.reduce((a, b) => a + b, 0)
    expect(r.conditional[0]).toBeCloseTo(Math.exp(total / continuationTokens(long, N)), 3)
    expect(r.conditional[1]).toBeNaN()
    // The per-document sums a paired bootstrap resamples (bench/lm-rank-frontier.ts) are the ones pooled here.
    const returned = r.docSums[0]?.continuation ?? []
    expect(returned.reduce((x, y) => x + y, 0)).toBeCloseTo(total, 3)
    expect(r.perTask[1]).toBeGreaterThan(1)
  })
})

describe('likelihood routing, batched as the engine batches prompts (#14)', () => {
  it('gives the mixes promptEvidence + likelihoodWeights give one prompt at a time (or the bag classifier’s expert when it is sure)', async () => {
    const pkg = await loadPackage(lmZooPath('package'))
    const like = pkg.manifest.router.promptLikelihood ?? { temperature: 2 }
    const session = await openCpu(pkg.model)
    try {
      const T = pkg.manifest.experts.length
      const graph = new DecoderGraph(session, controlsOf(session.inputNames), T)
      const prompts = [
        ...docs.map((d) => d.ids.slice(0, N)),
        ...docs.map((d) => d.promptIds),
        [(docs[0] as LmDoc).ids[0] as number], // one token: the router's
      ]
      const batched = await routedMixes(graph, prompts, T, like)
      // The package's bag-of-ids classifier (prompt_likelihood.bag) sends a prompt it is sure of to one expert,
      // unscored, as the engine does.
      const bag = like.bag ? readPromptBag(like.bag, T) : undefined
      let sure = 0
      for (const [i, p] of prompts.entries()) {
        const got = Array.from(batched[i] as ArrayLike<number>)
        expect(got).toHaveLength(T)
        if (p.length < 2) continue
        const expert = bag && sureExpert(bag, p, like.bag?.skipAbove ?? 1)
        if (expert !== undefined) {
          sure++
          expect(got).toEqual(Array.from({ length: T }, (_, e) => (e === expert ? 1 : 0)))
          continue
        }
        const alone = likelihoodWeights(await promptEvidence(graph, p), like, { topK: T })
        for (const [e, w] of Array.from(alone).entries()) expect(got[e]).toBeCloseTo(w, 4)
      }
      // Both paths ran: some prompts were sure, most were scored.
      if (bag) expect(sure).toBeGreaterThan(0)
      expect(sure).toBeLessThan(prompts.length - 1)
    } finally {
      await session.release()
    }
  })
})
