/**
 * A free prompt classifier to skip or prune the LM twin's likelihood scoring pass (issue 14): multinomial logistic
 * regression over the bag of the prompt's ids (gpu-runner's prompt-bag.ts), trained on zoo/lm/data/routing.jsonl,
 * evaluated in JavaScript (no onnxruntime pass). Its probabilities p [T] give, per prompt:
 * - skip: max p ≥ θ routes without scoring, one-hot on the argmax (or p² renormalised, "cls² mix");
 * - prune: otherwise only the top-m experts of p are scored (m rows instead of T), the mix softmax(−NLL/τ) over them;
 * - prior: β · ln p added to the likelihood's logits (likelihoodPosterior's logPrior, per prompt).
 * Scoring rows: what each arm's scoring passes hold, pooled over the split's documents, against τ 2's T per prompt.
 *
 * Reuses lm-likelihood-probe.ts's evidence (each expert's NLL of each prompt and each document's NLL under each
 * one-hot mix, cached per split) and its paired bootstrap against τ 2. `--cv` first prints a 5-fold
 * cross-validation of the classifier's settings on the routing data (how the defaults below were picked, without
 * looking at validation).
 *
 *   node --import tsx bench/quality/lm-bag-probe.ts [--split test] [--cv] [--bigrams 4096] [--l2 3e-5] [--steps 500]
 * @module
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  bagProbabilities,
  DecoderGraph,
  LmProfile,
  likelihoodWeights,
  type PromptBag,
  type PromptBagSpec,
  type PromptBagTraining,
  trainPromptBag,
} from '@twinserve/gpu-runner/generate'
import { controlsOf } from '@twinserve/gpu-runner/twin-contract'
import { openCpu } from './evaluate.ts'
import { type LmTaskData, loadLmSplits } from './lm-evaluate.ts'
import {
  argmax,
  bootstrap,
  type DocEvidence,
  evidence,
  evidenceOf,
  type Scored,
  scoreMixes,
} from './lm-likelihood-probe.ts'
import { readRecipe } from './twin-arms.ts'

const PACKAGE = 'zoo/lm/package/model.onnx'
const TEMPERATURE = 2
const THETAS = [0.8, 0.9, 0.95, 0.99]

interface BagArm {
  label: string
  /** Skip scoring when max p ≥ θ. */
  theta?: number
  /** The skipped prompt's mix: one-hot on the argmax, or p² renormalised. */
  skipMix?: 'onehot' | 'cls2'
  /** Score only the classifier's top-m experts. */
  m?: number
  /** β · ln p added to the logits. */
  beta?: number
}

function arms(): BagArm[] {
  const out: BagArm[] = [{ label: 'bag alone (θ 0, one-hot)', theta: 0 }]
  for (const theta of [0.9, 0.95, 0.99]) out.push({ label: `skip θ ${theta}`, theta })
  out.push({ label: 'skip θ 0.95, cls² mix', theta: 0.95, skipMix: 'cls2' })
  for (const m of [2, 3]) out.push({ label: `prune m ${m}`, m })
  for (const theta of [0.9, 0.95, 0.99])
    for (const m of [2, 3]) out.push({ label: `skip θ ${theta} + prune m ${m}`, theta, m })
  for (const beta of [0.5, 1]) out.push({ label: `prior β ${beta}`, beta })
  for (const beta of [0.5, 1])
    out.push({ label: `skip θ 0.95 + prune m 3 + prior β ${beta}`, theta: 0.95, m: 3, beta })
  return out
}

/** The routing data's prompts with their expert's index. */
function routingExamples(tasks: readonly string[]) {
  return readFileSync('zoo/lm/data/routing.jsonl', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const r = JSON.parse(line) as { expert: string; inputs: { input_ids: number[] } }
      return { ids: r.inputs.input_ids, y: tasks.indexOf(r.expert) }
    })
}

const topM = (p: ArrayLike<number>, m: number): number[] => {
  const order = Array.from(p, (_, e) => e).sort((a, b) => (p[b] as number) - (p[a] as number))
  return order.slice(0, m)
}

/** 5-fold cross-validation on the routing data: accuracy, mean NLL, skip coverage and precision, top-m recall. */
function crossValidate(
  examples: ReturnType<typeof routingExamples>,
  T: number,
  grid: { spec: PromptBagSpec; training: PromptBagTraining }[],
): void {
  console.log('5-fold cross-validation on zoo/lm/data/routing.jsonl (2,000 train prompts)')
  console.log(
    `| bigrams | l2 | steps | acc. % | NLL | ${THETAS.map((t) => `θ ${t}: cover / precision %`).join(' | ')} | top-2 recall % | top-3 recall % |`,
  )
  console.log(
    `| --: | --: | --: | --: | --: | ${THETAS.map(() => '--:').join(' | ')} | --: | --: |`,
  )
  for (const { spec, training } of grid) {
    let right = 0
    let nll = 0
    const cover = THETAS.map(() => ({ n: 0, right: 0 }))
    const recall = [0, 0]
    for (let f = 0; f < 5; f++) {
      const bag = trainPromptBag(
        examples.filter((_, i) => i % 5 !== f),
        T,
        spec,
        training,
      )
      for (const r of examples.filter((_, i) => i % 5 === f)) {
        const p = bagProbabilities(bag, r.ids)
        const a = argmax(p)
        if (a === r.y) right++
        nll -= Math.log(p[r.y] as number)
        THETAS.forEach((theta, k) => {
          const c = cover[k] as { n: number; right: number }
          if ((p[a] as number) >= theta) {
            c.n++
            if (a === r.y) c.right++
          }
        })
        for (const m of [2, 3])
          if (topM(p, m).includes(r.y)) recall[m - 2] = (recall[m - 2] as number) + 1
      }
    }
    const n = examples.length
    const pct = (a: number, b: number) => (b > 0 ? ((a / b) * 100).toFixed(1) : '–')
    console.log(
      `| ${spec.bigrams} | ${training.l2} | ${training.steps} | ${pct(right, n)} | ${(nll / n).toFixed(3)} | ${cover.map((c) => `${pct(c.n, n)} / ${pct(c.right, c.n)}`).join(' | ')} | ${pct(recall[0] as number, n)} | ${pct(recall[1] as number, n)} |`,
    )
  }
}

/** The classifier on the split's prompts: accuracy, skip coverage and precision per θ, top-m recall, per domain. */
function describe(tasks: readonly string[], probs: Float64Array[][]): void {
  console.log(
    `| domain | acc. % | ${THETAS.map((t) => `θ ${t}: skip / precision %`).join(' | ')} | top-2 recall % | top-3 recall % |`,
  )
  console.log(`| --- | --: | ${THETAS.map(() => '--:').join(' | ')} | --: | --: |`)
  const pct = (a: number, b: number) => (b > 0 ? ((a / b) * 100).toFixed(1) : '–')
  const pooled = { n: 0, right: 0, cover: THETAS.map(() => [0, 0]), recall: [0, 0] }
  const rows: string[] = []
  for (const [t, ps] of probs.entries()) {
    const s = { n: 0, right: 0, cover: THETAS.map(() => [0, 0]), recall: [0, 0] }
    for (const p of ps) {
      const a = argmax(p)
      for (const agg of [s, pooled]) {
        agg.n++
        if (a === t) agg.right++
        THETAS.forEach((theta, k) => {
          const c = agg.cover[k] as number[]
          if ((p[a] as number) >= theta) {
            c[0] = (c[0] as number) + 1
            if (a === t) c[1] = (c[1] as number) + 1
          }
        })
        for (const m of [2, 3])
          if (topM(p, m).includes(t)) agg.recall[m - 2] = (agg.recall[m - 2] as number) + 1
      }
    }
    rows.push(
      `| ${tasks[t]} | ${pct(s.right, s.n)} | ${s.cover.map((c) => `${pct(c[0] as number, s.n)} / ${pct(c[1] as number, c[0] as number)}`).join(' | ')} | ${pct(s.recall[0] as number, s.n)} | ${pct(s.recall[1] as number, s.n)} |`,
    )
  }
  const s = pooled
  rows.push(
    `| **all** | ${pct(s.right, s.n)} | ${s.cover.map((c) => `${pct(c[0] as number, s.n)} / ${pct(c[1] as number, c[0] as number)}`).join(' | ')} | ${pct(s.recall[0] as number, s.n)} | ${pct(s.recall[1] as number, s.n)} |`,
  )
  for (const r of rows) console.log(r)
}

/** One arm's mix for a document and the scoring rows it costs (0 when skipped). */
function armMix(
  arm: BagArm,
  d: DocEvidence,
  p: Float64Array,
  T: number,
): { mix: Float32Array; rows: number; skipped: boolean } {
  const top = argmax(p)
  if (arm.theta !== undefined && (p[top] as number) >= arm.theta) {
    if (arm.skipMix === 'cls2') {
      const sq = Array.from(p, (x) => x * x)
      const sum = sq.reduce((a, b) => a + b, 0)
      return { mix: Float32Array.from(sq, (x) => x / sum), rows: 0, skipped: true }
    }
    const mix = new Float32Array(T)
    mix[top] = 1
    return { mix, rows: 0, skipped: true }
  }
  const kept = arm.m === undefined ? undefined : new Set(topM(p, arm.m))
  const expertMask = kept ? Array.from({ length: T }, (_, e) => (kept.has(e) ? 1 : 0)) : undefined
  const logPrior =
    arm.beta === undefined
      ? undefined
      : Array.from(p, (x) => (arm.beta as number) * Math.log(Math.max(x, 1e-6)))
  const mix = likelihoodWeights(
    evidence(d),
    { temperature: TEMPERATURE, ...(logPrior ? { logPrior } : {}) },
    expertMask ? { expertMask } : {},
  )
  return { mix, rows: arm.m ?? T, skipped: false }
}

async function main() {
  const args = process.argv.slice(2)
  const opt = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined)
  const split = opt('--split') === 'test' ? 'test' : 'validation'
  const spec: PromptBagSpec = { bigrams: Number(opt('--bigrams') ?? 4096) }
  const training: PromptBagTraining = {
    l2: Number(opt('--l2') ?? 3e-5),
    steps: Number(opt('--steps') ?? 500),
  }
  const recipe = await readRecipe('zoo/lm/recipe.yaml')
  const tasks = recipe.experts.map((e) => e.name)
  const T = tasks.length
  const examples = routingExamples(tasks)
  if (args.includes('--cv')) {
    const grid: { spec: PromptBagSpec; training: PromptBagTraining }[] = []
    for (const bigrams of [0, 4096])
      for (const l2 of [0, 1e-5, 3e-5, 1e-4])
        grid.push({ spec: { bigrams }, training: { l2, steps: 500 } })
    crossValidate(examples, T, grid)
  }
  const t0 = performance.now()
  const bag: PromptBag = trainPromptBag(examples, T, spec, training)
  console.error(`trained in ${((performance.now() - t0) / 1000).toFixed(1)} s`)

  const profile = await LmProfile.load(join('zoo/lm/models'))
  const data = loadLmSplits(profile, tasks, split)
  const session = await openCpu(PACKAGE)
  const ev = await evidenceOf(
    session,
    data,
    recipe.experts.map((e) => e.model),
    split,
  )
  const graph = new DecoderGraph(session, controlsOf(session.inputNames), T)
  const t1 = performance.now()
  const probs = data.map((d: LmTaskData) =>
    d.docs.map((doc) => bagProbabilities(bag, doc.promptIds)),
  )
  const n = probs.reduce((a, ps) => a + ps.length, 0)
  const perPromptUs = ((performance.now() - t1) * 1000) / n
  console.log(
    `classifier: bag of unigram ids + ${spec.bigrams} hashed bigrams, L2 ${training.l2}, ${training.steps} Adam steps, trained on routing.jsonl; ${split}, ${n} prompts, ${perPromptUs.toFixed(1)} µs a prompt (features + probabilities, JS)`,
  )
  describe(tasks, probs)

  const baseline: Scored = await scoreMixes(graph, data, ev, (d) =>
    likelihoodWeights(evidence(d), TEMPERATURE),
  )
  const rows: string[] = []
  const fmt = (s: Scored) => {
    const mean = s.norm.reduce((x, y) => x + y, 0) / s.norm.length
    return `${(s.acc * 100).toFixed(1)} | ${mean.toFixed(1)} | ${Math.min(...s.norm).toFixed(1)} | ${s.norm.map((x) => x.toFixed(1)).join(' | ')}`
  }
  rows.push(`| τ 2 (baseline) | ${T}.00 | 0.0 % | 0.0 % | | | ${fmt(baseline)} | 0 | 0 |`)
  for (const arm of arms()) {
    let scoringRows = 0
    let skipped = 0
    let skippedRight = 0
    let scored = 0
    let recalled = 0
    const scoredArm = await scoreMixes(graph, data, ev, (d, t, i) => {
      const p = probs[t]?.[i] as Float64Array
      const got = armMix(arm, d, p, T)
      scoringRows += got.rows
      if (got.skipped) {
        skipped++
        if (argmax(p) === t) skippedRight++
      } else {
        scored++
        if (arm.m === undefined || topM(p, arm.m).includes(t)) recalled++
      }
      return got.mix
    })
    const ci = bootstrap(data, ev, scoredArm, baseline)
    const pct = (a: number, b: number) => (b > 0 ? ((a / b) * 100).toFixed(1) : '–')
    rows.push(
      `| ${arm.label} | ${(scoringRows / n).toFixed(2)} | ${pct(n * T - scoringRows, n * T)} % | ${pct(skipped, n)} % | ${pct(skippedRight, skipped)} % | ${arm.m === undefined ? '' : `${pct(recalled, scored)} %`} | ${fmt(scoredArm)} | ${ci.mean} | ${ci.worst} |`,
    )
    console.error(rows.at(-1))
  }
  console.log(
    `${PACKAGE}, ${split}, expert perplexity ${ev.expert.map((x) => x.toFixed(2)).join(' / ')}; normalised % = expert / routed × 100; Δ: paired bootstrap vs τ 2`,
  )
  console.log(
    `| arm | scoring rows / prompt | rows cut | skip | skip right | top-m recall (scored) | acc. % | mean normalised % | worst | ${tasks.join(' | ')} | Δ mean vs τ 2, 95 % | Δ worst vs τ 2, 95 % |`,
  )
  console.log(
    `| --- | --: | --: | --: | --: | --: | --: | --: | --: | ${tasks.map(() => '--:').join(' | ')} | --: | --: |`,
  )
  for (const r of rows) console.log(r)
  await session.release()
}

await main()
