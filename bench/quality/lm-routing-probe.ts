/**
 * Fast probe of the LM twin's router (issue 14) on the VALIDATION splits (or `--split test` for the report),
 * without a package build per arm: the recipe's router alone (`probeRouters`: the shared merge once, then per arm
 * the router's features, training on the routing data as the build does, and its logits on every document's
 * prompt, BOS + prompt as a request sends it), scored with the committed package's twin graph.
 *
 * The exclusive knowledge does not depend on the router, so the committed graph with an explicit mix computes
 * exactly what a package rebuilt with the arm's router would apply. Once per split (cached under
 * bench/.cache/lm-routing-probe, keyed by the package's exclusive knowledge) every document's summed NLL under each
 * one-hot mix and each expert's own perplexity; then per arm:
 * - hard routing (the router's argmax expert): a lookup in that cache, no model run;
 * - the dense mix softmax(logits / τ) for each `--dense` temperature τ (1 = what the package's router applies):
 *   one pass of the twin graph over the split with those mixes (the mix is not linear in the NLL).
 * Normalised = expert's own perplexity / routed perplexity × 100 per domain (Twin-Merging's Eq. 4, lower
 * perplexity better), as bench:quality's LM section computes it; "package" rows route with the committed graph's
 * own router (its applied weights), which the probe's arm 0 ("old", the router the package was built with)
 * reproduces exactly. `--likelihood` adds routing by each expert's likelihood of the prompt (not a graph router).
 *
 *   node --import tsx bench/quality/lm-routing-probe.ts [--arms 0,2] [--dense 1,2] [--split test]
 *     [--recipe zoo/lm/recipe.yaml] [--confusion] [--likelihood] [--package-dense]
 * @module
 */
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { createReporter, probeRouters, type RouterProbeArm } from '@twinserve/gpu-runner/build'
import { DecoderGraph, LmProfile } from '@twinserve/gpu-runner/generate'
import { controlsOf } from '@twinserve/gpu-runner/twin-contract'
import { openCpu, type Session } from './evaluate.ts'
import { documentNlls, type LmTaskData, loadLmSplits, routedWeights } from './lm-evaluate.ts'
import { readRecipe } from './twin-arms.ts'

const PACKAGE = 'zoo/lm/package/model.onnx'
const MANIFEST = 'zoo/lm/package/manifest.json'
const CACHE = 'bench/.cache/lm-routing-probe'

/** Tensors of the LM graph a router can read (zoo/lm/README.md "Model"). */
export const LM_FEATURES = {
  /** Token + position embeddings, [batch, seq, 128]. */
  embeddings: '/Add_1_output_0',
  /** Block 0's FFN activation (GELU output), [batch, seq, 384]. */
  block0Ffn: '/blocks.0/Mul_1_output_0',
  /** Block 1's output (residual stream), [batch, seq, 128]. */
  block1: '/blocks.1/Add_2_output_0',
  /** The LM head's input (the default feature), [batch·seq, 128]. */
  last: '/Reshape_output_0',
} as const
const F = LM_FEATURES

/**
 * The router before issue 14's probe (recipe of 2026-12-03): an MLP [64] on the LM head's input, mean-pooled, 40
 * epochs. Every arm starts from it, so the arms do not depend on what the recipe's router block says now.
 */
const OLD = {
  feature: F.last,
  bag_of_tokens: false,
  hidden: [64],
  epochs: 40,
  lr: 0.001,
  patience: 5,
  mlp_temperature: undefined,
}
/** The bag of tokens over the decoder's own inputs (the LM recipe has no tokenizer block). */
const BAG = { bag_of_tokens: true, token_inputs: { vocab: 2048 } }
const WIDE = { hidden: [256], epochs: 80, patience: 12, lr: 0.002 }
const arm = (label: string, router: Record<string, unknown>): RouterProbeArm => ({
  label,
  router: { ...OLD, ...router },
})

/** The arms (indices for `--arms`); each changes the router block. */
export const PROBE_ARMS: readonly RouterProbeArm[] = [
  arm('old: [64] on the last hidden state', {}),
  arm('last hidden, [256] 80 epochs', WIDE),
  arm('last hidden + bag', BAG),
  arm('last hidden + bag, [256] 80 epochs', { ...BAG, ...WIDE }),
  arm('embeddings + block 0 FFN + bag, [256] 80 epochs', {
    feature: [F.embeddings, F.block0Ffn],
    ...BAG,
    ...WIDE,
  }),
  arm('embeddings + block 0 FFN + last + bag, [256] 80 epochs', {
    feature: [F.embeddings, F.block0Ffn, F.last],
    ...BAG,
    ...WIDE,
  }),
  arm('embeddings + bag, [256] 80 epochs', { feature: F.embeddings, ...BAG, ...WIDE }),
  arm('last hidden + bag, [256] 80 epochs, seed 2', { ...BAG, ...WIDE, seed: 2 }),
  arm('block 1 + last + bag, [256] 80 epochs', { feature: [F.block1, F.last], ...BAG, ...WIDE }),
  arm('last hidden + bag, linear', { ...BAG, hidden: [], epochs: 80, patience: 12 }),
  arm('block 1 + last + bag, [256] 80 epochs, seed 2', {
    feature: [F.block1, F.last],
    ...BAG,
    ...WIDE,
    seed: 2,
  }),
  arm('block 1 + last + bag, [128] 80 epochs', {
    feature: [F.block1, F.last],
    ...BAG,
    ...WIDE,
    hidden: [128],
  }),
  arm('block 1 + last, [256] 80 epochs', { feature: [F.block1, F.last], ...WIDE }),
  arm('embeddings + block 0 FFN + block 1 + last, [256] 80 epochs', {
    feature: [F.embeddings, F.block0Ffn, F.block1, F.last],
    ...WIDE,
  }),
  arm('block 1 + last, [256] 80 epochs, seed 2', {
    feature: [F.block1, F.last],
    ...WIDE,
    seed: 2,
  }),
]

interface Cache {
  /** nll[e][t][i]: summed NLL of document i of domain t under the one-hot mix of expert e. */
  nll: number[][][]
  /** Each expert's own perplexity on its domain (the plain expert graph). */
  expert: number[]
}

/**
 * The cache's key: what the one-hot NLLs depend on, the package's exclusive knowledge (its manifest lists every
 * tensor's per-expert relative error to full precision) and the recipe's shared merge and exclusive spec, not
 * its router, so that a package rebuilt with another router reuses the cache.
 */
function cacheKey(manifestPath: string): string {
  const m = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
    exclusive: unknown
    recipe: { shared: unknown; exclusive: unknown }
  }
  const what = JSON.stringify([m.exclusive, m.recipe.shared, m.recipe.exclusive])
  return createHash('sha256').update(what).digest('hex').slice(0, 16)
}

async function oneHotCache(
  session: Session,
  data: readonly LmTaskData[],
  expertPaths: readonly string[],
  key: string,
): Promise<Cache> {
  const file = join(CACHE, `${key}.json`)
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Cache
  } catch {
    // Not cached yet: compute below.
  }
  const T = data.length
  const graph = new DecoderGraph(session, controlsOf(session.inputNames), T)
  const nll: number[][][] = []
  for (let e = 0; e < T; e++) {
    const mix = Array.from({ length: T }, (_, j) => (j === e ? 1 : 0))
    const perDomain: number[][] = []
    for (const d of data)
      perDomain.push(
        await documentNlls(
          graph,
          d.docs,
          d.docs.map(() => ({ mixWeights: mix })),
        ),
      )
    nll.push(perDomain)
    console.error(`cache: one-hot ${e + 1}/${T}`)
  }
  const expert: number[] = []
  for (const [t, path] of expertPaths.entries()) {
    const s = await openCpu(path)
    const d = data[t] as LmTaskData
    const sum = (await documentNlls(new DecoderGraph(s, [], 0), d.docs, [])).reduce(
      (a, b) => a + b,
      0,
    )
    expert.push(Math.exp(sum / d.tokens))
    await s.release()
  }
  mkdirSync(CACHE, { recursive: true })
  writeFileSync(file, JSON.stringify({ nll, expert }))
  return { nll, expert }
}

function softmax(logits: ArrayLike<number>, from: number, T: number, tau: number): number[] {
  let max = Number.NEGATIVE_INFINITY
  for (let j = 0; j < T; j++) max = Math.max(max, (logits[from + j] as number) / tau)
  const e = Array.from({ length: T }, (_, j) => Math.exp((logits[from + j] as number) / tau - max))
  const s = e.reduce((a, b) => a + b, 0)
  return e.map((x) => x / s)
}

const argmax = (v: readonly number[]) => v.reduce((b, x, i) => (x > (v[b] as number) ? i : b), 0)

async function main() {
  const args = process.argv.slice(2)
  const opt = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined)
  const split = opt('--split') === 'test' ? 'test' : 'validation'
  const recipePath = resolve(opt('--recipe') ?? 'zoo/lm/recipe.yaml')
  const pick = opt('--arms')?.split(',')
  const arms = pick ? PROBE_ARMS.filter((_a, i) => pick.includes(String(i))) : PROBE_ARMS
  const temps = (opt('--dense') ?? '').split(',').filter(Boolean).map(Number)
  const recipe = await readRecipe(recipePath)
  const tasks = recipe.experts.map((e) => e.name)
  const T = tasks.length
  const profile = await LmProfile.load(dirname(recipe.base))
  const data = loadLmSplits(profile, tasks, split)
  const session = await openCpu(PACKAGE)
  const t0 = performance.now()
  const cache = await oneHotCache(
    session,
    data,
    recipe.experts.map((e) => e.model),
    `${cacheKey(MANIFEST)}-${split}`,
  )
  console.error(`cache ready (${((performance.now() - t0) / 1000).toFixed(0)} s)`)
  const graph = new DecoderGraph(session, controlsOf(session.inputNames), T)

  const rows: string[] = []
  const report = (label: string, perTask: number[], acc: number, extra = '') => {
    const norm = perTask.map((p, t) => ((cache.expert[t] as number) / p) * 100)
    const mean = norm.reduce((a, b) => a + b, 0) / T
    const worst = Math.min(...norm)
    rows.push(
      `| ${label} | ${(acc * 100).toFixed(1)} | **${mean.toFixed(1)}** | ${worst.toFixed(1)} | ${norm.map((x) => x.toFixed(1)).join(' | ')} |${extra}`,
    )
    console.error(rows.at(-1))
  }
  const hard = (picks: readonly Int32Array[]) =>
    data.map((d, t) => {
      let sum = 0
      d.docs.forEach((_, i) => {
        sum += cache.nll[picks[t]?.[i] as number]?.[t]?.[i] as number
      })
      return Math.exp(sum / d.tokens)
    })
  // The mean over domains of the share routed to the right expert, as bench:quality reports router accuracy.
  const accuracy = (picks: readonly Int32Array[]) =>
    picks.reduce((a, p, t) => a + p.filter((e) => e === t).length / p.length, 0) / picks.length
  const dense = async (mixes: readonly number[][][]) => {
    const out: number[] = []
    for (const [t, d] of data.entries()) {
      const nll = await documentNlls(
        graph,
        d.docs,
        (mixes[t] as number[][]).map((w) => ({ mixWeights: w })),
      )
      out.push(Math.exp(nll.reduce((a, b) => a + b, 0) / d.tokens))
    }
    return out
  }

  // The committed package's own router (what bench:quality's twin rows apply).
  const applied: number[][][] = []
  for (const d of data) {
    const perDoc: number[][] = []
    for (const doc of d.docs) perDoc.push(Array.from(await routedWeights(graph, doc.promptIds, T)))
    applied.push(perDoc)
  }
  const appliedPicks = applied.map((g) => Int32Array.from(g, argmax))
  report('package router, top-1', hard(appliedPicks), accuracy(appliedPicks))
  if (args.includes('--package-dense'))
    report('package router, dense', await dense(applied), accuracy(appliedPicks))
  report('oracle one-hot', hard(data.map((d, t) => new Int32Array(d.docs.length).fill(t))), 1)

  if (args.includes('--likelihood')) {
    // The experts as a generative classifier: each one-hot mix's NLL of the prompt (t ≥ 1), posterior
    // softmax(−NLL / τ) under a uniform prior. Not a router the graph has: T prefills of the prompt (one batched
    // pass of T rows), the bound of what the prompt tells about its domain through these models.
    const ll: number[][][] = data.map(() => [])
    for (let e = 0; e < T; e++) {
      const mix = Array.from({ length: T }, (_, j) => (j === e ? 1 : 0))
      for (const [t, d] of data.entries()) {
        const docs = d.docs.map((doc) => ({ ids: doc.promptIds, promptIds: doc.promptIds }))
        const nll = await documentNlls(
          graph,
          docs,
          docs.map(() => ({ mixWeights: mix })),
        )
        nll.forEach((x, i) => {
          const row = (ll[t] as number[][])[i] ?? []
          row[e] = -x
          ;(ll[t] as number[][])[i] = row
        })
      }
    }
    const picks = ll.map((g) => Int32Array.from(g, argmax))
    report('prompt likelihood under each expert, top-1', hard(picks), accuracy(picks))
    for (const tau of temps)
      report(
        `prompt likelihood under each expert, dense τ ${tau}`,
        await dense(ll.map((g) => g.map((v) => softmax(v, 0, T, tau)))),
        accuracy(picks),
      )
  }

  const prompts = data.map((d) =>
    d.docs.map((doc) => ({
      input_ids: doc.promptIds,
      attention_mask: doc.promptIds.map(() => 1),
      position_ids: doc.promptIds.map((_, i) => i),
    })),
  )
  const results = await probeRouters(recipePath, arms, prompts, createReporter())
  for (const r of results) {
    report(
      `${r.label}, top-1`,
      hard(r.predictions),
      accuracy(r.predictions),
      ` held-out ${(r.heldoutAccuracy * 100).toFixed(1)}, d ${r.featureSize}, ${r.seconds.toFixed(0)} s`,
    )
    if (args.includes('--confusion')) {
      console.error(`  confusion (row: domain, column: routed to) ${tasks.join(', ')}`)
      r.predictions.forEach((p, t) => {
        const row = new Array(T).fill(0)
        for (const e of p) row[e]++
        console.error(
          `  ${(tasks[t] as string).padEnd(10)} ${row.map((c) => String(c).padStart(4)).join(' ')}`,
        )
      })
    }
    for (const tau of temps) {
      const logits = r.logits
      if (!logits) continue
      const mixes = data.map((d, t) =>
        d.docs.map((_, i) => softmax(logits[t] as Float32Array, i * T, T, tau)),
      )
      const t1 = performance.now()
      report(
        `${r.label}, dense τ ${tau}`,
        await dense(mixes),
        accuracy(r.predictions),
        ` (${((performance.now() - t1) / 1000).toFixed(0)} s)`,
      )
    }
  }
  await session.release()
  console.log(
    `${split}, expert perplexity ${cache.expert.map((p) => p.toFixed(2)).join(' / ')}; normalised % = expert / routed × 100`,
  )
  console.log(`| arm | router acc. % | mean normalised % | worst | ${tasks.join(' | ')} |`)
  console.log(`| --- | --: | --: | --: | ${tasks.map(() => '--:').join(' | ')} |`)
  for (const r of rows) console.log(r)
}

await main()
