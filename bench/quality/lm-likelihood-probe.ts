/**
 * Levers of prompt-likelihood routing on the LM twin (issue 14, "twin within 3 % of each expert"), measured on the
 * VALIDATION splits (`--split test` to report), with the committed package's twin graph and no build per arm.
 *
 * Once per split (cached under bench/.cache/lm-likelihood-probe, keyed by the package's model bytes) for every
 * document: each expert's NLL of its prompt, computed by the runner's own `promptNlls` (the served code path:
 * one pass of T one-hot rows over BOS + prompt), the prompt's length, the MLP router's applied weights on the
 * prompt, and the document's summed NLL under each one-hot mix (so top-1 routing is a lookup). Then per arm a mix
 * per document from those numbers (`likelihoodWeights`, the function the engine applies, with the arm's options),
 * and, for a dense arm, one pass of the twin graph over the split under those mixes.
 *
 * Normalised = expert's own perplexity / routed perplexity × 100 per domain (Twin-Merging's Eq. 4, lower perplexity
 * better); the goal is ≥ 97.1 on every domain (within 3 %).
 *
 *   node --import tsx bench/quality/lm-likelihood-probe.ts [--split test] [--arms label-prefix,…] [--diagnose]
 *     [--fit] [--prefix 32,64] [--package dir] [--baseline-package dir]
 * `--package` probes another build of the LM twin (default zoo/lm/package; e.g. one with `exclusive.topk_gather`);
 * `--baseline-package` scores the τ 2 baseline (the Δ columns' reference, still paired by document) on that build
 * instead, and adds its row: two builds compared as served.
 * `--fit` adds arms whose τ and log prior are fitted (logistic regression) on the routing data's train prompts;
 * `--prefix n` routes from the document's first n ids instead (a diagnosis: what a longer prompt would tell).
 * The "cascade" arms route a document by the MLP router's applied weights when their maximum reaches θ (what
 * `router_above` keeps without a scoring pass), else by likelihood τ 2; their last columns give the share that
 * skips scoring and the router's and the likelihood's accuracy among those prompts.
 * @module
 */
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  DecoderGraph,
  LmProfile,
  likelihoodWeights,
  type PromptEvidence,
  type PromptLikelihoodOptions,
  promptEvidence,
} from '@twinserve/gpu-runner/generate'
import { controlsOf } from '@twinserve/gpu-runner/twin-contract'
import { openCpu, type Session } from './evaluate.ts'
import { documentNlls, type LmTaskData, loadLmSplits, routedWeights } from './lm-evaluate.ts'
import { readRecipe } from './twin-arms.ts'

/** The twin graph probed (`--package`). */
let PACKAGE = 'zoo/lm/package/model.onnx'
const CACHE = 'bench/.cache/lm-likelihood-probe'

/** One document's routing evidence. */
export interface DocEvidence {
  /** Each expert's summed NLL of the prompt (t ≥ 1), [T]. */
  promptNll: number[]
  /** Prompt ids (BOS included). */
  promptIds: number
  /** The MLP router's applied weights on the prompt (top-k = T), [T]. */
  router: number[]
  /** The document's summed NLL under each one-hot mix, [T]. */
  docNll: number[]
}

export interface SplitEvidence {
  domains: string[]
  /** Per domain, per document. */
  docs: DocEvidence[][]
  /** Predicted ids per domain (the perplexity's denominator). */
  tokens: number[]
  /** Each expert's own perplexity on its domain (the plain expert graph). */
  expert: number[]
}

function modelKey(path = PACKAGE): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 16)
}

async function collect(
  session: Session,
  data: readonly LmTaskData[],
  expertPaths: readonly string[],
): Promise<SplitEvidence> {
  const T = data.length
  const graph = new DecoderGraph(session, controlsOf(session.inputNames), T)
  const docs: DocEvidence[][] = []
  for (const [t, d] of data.entries()) {
    const rows: DocEvidence[] = []
    for (const doc of d.docs)
      rows.push({
        promptNll: Array.from((await promptEvidence(graph, doc.promptIds)).nll),
        promptIds: doc.promptIds.length,
        router: Array.from(await routedWeights(graph, doc.promptIds, T)),
        docNll: [],
      })
    for (let e = 0; e < T; e++) {
      const mix = Array.from({ length: T }, (_, j) => (j === e ? 1 : 0))
      const nll = await documentNlls(
        graph,
        d.docs,
        d.docs.map(() => ({ mixWeights: mix })),
      )
      nll.forEach((x, i) => {
        ;(rows[i] as DocEvidence).docNll[e] = x
      })
    }
    docs.push(rows)
    console.error(`collected ${d.name} (${t + 1}/${T})`)
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
  return { domains: data.map((d) => d.name), docs, tokens: data.map((d) => d.tokens), expert }
}

async function evidenceOf(
  session: Session,
  data: readonly LmTaskData[],
  expertPaths: readonly string[],
  split: string,
  modelPath = PACKAGE,
): Promise<SplitEvidence> {
  const file = join(CACHE, `${modelKey(modelPath)}-${split}.json`)
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as SplitEvidence
  } catch {
    // Not cached yet: collect below.
  }
  const ev = await collect(session, data, expertPaths)
  mkdirSync(CACHE, { recursive: true })
  writeFileSync(file, JSON.stringify(ev))
  return ev
}

const argmax = (v: ArrayLike<number>) => {
  let b = 0
  for (let i = 1; i < v.length; i++) if ((v[i] as number) > (v[b] as number)) b = i
  return b
}

/** Confusion of top-1 likelihood routing, and its accuracy by prompt length. */
function diagnose(ev: SplitEvidence): void {
  const T = ev.domains.length
  console.log(
    `confusion of top-1 prompt likelihood (row: domain, column: routed to ${ev.domains.join(', ')})`,
  )
  for (const [t, docs] of ev.docs.entries()) {
    const row = new Array(T).fill(0)
    for (const d of docs) row[argmax(d.promptNll.map((x) => -x))]++
    console.log(
      `  ${(ev.domains[t] as string).padEnd(10)} ${row.map((c) => String(c).padStart(4)).join(' ')}`,
    )
  }
  const buckets = [0, 10, 15, 20, 25, 30, 40, 1000]
  console.log('accuracy by prompt ids (speeches, fiction, fortunes pooled):')
  for (let b = 0; b + 1 < buckets.length; b++) {
    let n = 0
    let ok = 0
    for (const t of [1, 2, 3])
      for (const d of ev.docs[t] ?? [])
        if (d.promptIds >= (buckets[b] as number) && d.promptIds < (buckets[b + 1] as number)) {
          n++
          if (argmax(d.promptNll.map((x) => -x)) === t) ok++
        }
    console.log(`  [${buckets[b]}, ${buckets[b + 1]}): ${ok}/${n}`)
  }
  // What a misrouted document costs: its NLL under the routed expert vs its own, per domain.
  console.log("cost of top-1 misroutes: share of the domain's excess NLL over the oracle")
  for (const [t, docs] of ev.docs.entries()) {
    let excess = 0
    let oracle = 0
    for (const d of docs) {
      const e = argmax(d.promptNll.map((x) => -x))
      excess += (d.docNll[e] as number) - (d.docNll[t] as number)
      oracle += d.docNll[t] as number
    }
    console.log(
      `  ${(ev.domains[t] as string).padEnd(10)} oracle ppl ${Math.exp(oracle / (ev.tokens[t] as number)).toFixed(2)}, top-1 ppl ${Math.exp((oracle + excess) / (ev.tokens[t] as number)).toFixed(2)}, expert ${(ev.expert[t] as number).toFixed(2)}`,
    )
  }
}

export { argmax, diagnose, evidenceOf }

/** The routing data's prompts (zoo/lm/data/routing.jsonl: train prompts, 400 per domain) as evidence. */
interface RoutingEvidence {
  /** Per prompt: its domain's index, each expert's NLL of it, its length, the router's weights. */
  rows: { y: number; nll: number[]; tokens: number; router: number[] }[]
}

async function routingEvidence(
  session: Session,
  tasks: readonly string[],
): Promise<RoutingEvidence> {
  const file = join(CACHE, `${modelKey()}-routing.json`)
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as RoutingEvidence
  } catch {
    // Not cached yet: collect below.
  }
  const graph = new DecoderGraph(session, controlsOf(session.inputNames), tasks.length)
  const rows: RoutingEvidence['rows'] = []
  const lines = readFileSync('zoo/lm/data/routing.jsonl', 'utf8').split('\n').filter(Boolean)
  for (const [i, line] of lines.entries()) {
    const r = JSON.parse(line) as { expert: string; inputs: { input_ids: number[] } }
    const ev = await promptEvidence(graph, r.inputs.input_ids, true)
    rows.push({
      y: tasks.indexOf(r.expert),
      nll: Array.from(ev.nll),
      tokens: ev.tokens,
      router: Array.from(ev.router ?? []),
    })
    if (i % 500 === 499) console.error(`routing evidence ${i + 1}/${lines.length}`)
  }
  mkdirSync(CACHE, { recursive: true })
  writeFileSync(file, JSON.stringify({ rows }))
  return { rows }
}

/**
 * Multinomial logistic regression of the domain on −NLL_e (or per token), with one scale a = 1/τ and a bias
 * per expert (b_0 = 0): the calibrated posterior of the routing data. Full-batch gradient descent (Adam).
 */
function fitPrior(ev: RoutingEvidence, perToken: boolean, fixTemperature?: number) {
  const T = ev.rows[0]?.nll.length ?? 0
  let a = fixTemperature ? 1 / fixTemperature : 1
  const b = new Array<number>(T).fill(0)
  const m = new Array<number>(T + 1).fill(0)
  const v = new Array<number>(T + 1).fill(0)
  const lr = 0.02
  let loss = 0
  for (let step = 1; step <= 3000; step++) {
    const g = new Array<number>(T + 1).fill(0) // [da, db_1..]
    loss = 0
    for (const r of ev.rows) {
      const x = r.nll.map((n) => -n / (perToken ? Math.max(r.tokens, 1) : 1))
      const z = x.map((xi, e) => a * xi + (b[e] as number))
      const mx = Math.max(...z)
      const p = z.map((zi) => Math.exp(zi - mx))
      const s = p.reduce((u, w) => u + w, 0)
      loss -= Math.log((p[r.y] as number) / s)
      for (let e = 0; e < T; e++) {
        const d = (p[e] as number) / s - (e === r.y ? 1 : 0)
        g[0] = (g[0] as number) + d * (x[e] as number)
        g[e + 1] = (g[e + 1] as number) + d
      }
    }
    g[1] = 0
    if (fixTemperature) g[0] = 0
    for (let k = 0; k <= T; k++) {
      const gk = (g[k] as number) / ev.rows.length
      m[k] = 0.9 * (m[k] as number) + 0.1 * gk
      v[k] = 0.999 * (v[k] as number) + 0.001 * gk * gk
      const step_ =
        (lr * ((m[k] as number) / (1 - 0.9 ** step))) /
        (Math.sqrt((v[k] as number) / (1 - 0.999 ** step)) + 1e-8)
      if (k === 0) a = Math.max(a - step_ * (perToken ? 1 : 0.1), 1e-3)
      else b[k - 1] = (b[k - 1] as number) - step_
    }
  }
  return { temperature: 1 / a, logPrior: b, loss: loss / ev.rows.length }
}

/** A lever setting: the runner's options (what a recipe's `router.prompt_likelihood` would carry). */
export interface LikelihoodArm {
  label: string
  options: PromptLikelihoodOptions
  /**
   * Cascade: a prompt whose MLP router's largest applied weight is ≥ this keeps the router's mix (what a prefill
   * with the graph's router on applies: no scoring pass, no second prefill); the others are routed by likelihood.
   */
  routerAbove?: number
}

const evidence = (d: DocEvidence): PromptEvidence => ({
  nll: d.promptNll,
  tokens: d.promptIds - 1,
  router: d.router,
})

/** Normalised % per domain of one arm: one-hot mixes by lookup, the rest in one twin pass per domain. */
function score(
  graph: DecoderGraph,
  data: readonly LmTaskData[],
  ev: SplitEvidence,
  options: PromptLikelihoodOptions,
  routerAbove?: number,
): Promise<Scored> {
  const sure = { n: 0, right: 0, likelihoodRight: 0, all: 0 }
  return scoreMixes(
    graph,
    data,
    ev,
    (d, t) => {
      sure.all++
      if (routerAbove === undefined || Math.max(...d.router) < routerAbove)
        return likelihoodWeights(evidence(d), options)
      sure.n++
      if (argmax(d.router) === t) sure.right++
      if (argmax(likelihoodWeights(evidence(d), options)) === t) sure.likelihoodRight++
      return Float32Array.from(d.router)
    },
    sure,
  )
}

/**
 * Normalised % per domain of a mix per document (`mixOf(evidence, domain, index)`): a one-hot mix by lookup of the
 * document's NLL under that expert, the rest in one twin pass per domain.
 */
async function scoreMixes(
  graph: DecoderGraph,
  data: readonly LmTaskData[],
  ev: SplitEvidence,
  mixOf: (d: DocEvidence, t: number, i: number) => Float32Array,
  sure: Scored['sure'] = { n: 0, right: 0, likelihoodRight: 0, all: 0 },
): Promise<Scored> {
  const norm: number[] = []
  const perDoc: number[][] = []
  let acc = 0
  for (const [t, docs] of ev.docs.entries()) {
    const mixes = docs.map((d, i) => mixOf(d, t, i))
    const nlls = new Array<number>(docs.length).fill(0)
    const dense: number[] = []
    mixes.forEach((w, i) => {
      const top = argmax(w)
      if (top === t) acc += 1 / docs.length / ev.docs.length
      if ((w[top] as number) >= 1 - 1e-6) nlls[i] = (docs[i] as DocEvidence).docNll[top] as number
      else dense.push(i)
    })
    if (dense.length > 0) {
      const all = (data[t] as LmTaskData).docs
      const nll = await documentNlls(
        graph,
        dense.map((i) => all[i] as LmTaskData['docs'][number]),
        dense.map((i) => ({ mixWeights: mixes[i] as Float32Array })),
      )
      dense.forEach((i, j) => {
        nlls[i] = nll[j] as number
      })
    }
    const sum = nlls.reduce((a, b) => a + b, 0)
    norm.push(((ev.expert[t] as number) / Math.exp(sum / (ev.tokens[t] as number))) * 100)
    perDoc.push(nlls)
  }
  return { norm, acc, perDoc, sure }
}

export { bootstrap, evidence, type Scored, score, scoreMixes }

interface Scored {
  /** Normalised % per domain. */
  norm: number[]
  /** Mean over domains of the share whose largest weight is the true domain. */
  acc: number
  /** Each document's summed NLL under the arm's mix, per domain. */
  perDoc: number[][]
  /** Cascade arms: prompts that kept the router's mix (skipped scoring), how many of them it routed right, of all. */
  sure: { n: number; right: number; likelihoodRight: number; all: number }
}

/**
 * Paired bootstrap over documents (resampled within each domain, 2,000 times, fixed seed): the 95 % interval of
 * (arm − baseline) in mean normalised % and in the worst domain's normalised %.
 */
function bootstrap(data: readonly LmTaskData[], ev: SplitEvidence, arm: Scored, base: Scored) {
  let seed = 20261205
  const rand = () => {
    seed = (seed * 1664525 + 1013904223) >>> 0
    return seed / 2 ** 32
  }
  const mean: number[] = []
  const worst: number[] = []
  for (let r = 0; r < 2000; r++) {
    const a: number[] = []
    const b: number[] = []
    for (const [t, d] of data.entries()) {
      let na = 0
      let nb = 0
      let tokens = 0
      for (let k = 0; k < d.docs.length; k++) {
        const i = Math.floor(rand() * d.docs.length)
        na += arm.perDoc[t]?.[i] as number
        nb += base.perDoc[t]?.[i] as number
        tokens += (d.docs[i]?.ids.length ?? 1) - 1
      }
      a.push(((ev.expert[t] as number) / Math.exp(na / tokens)) * 100)
      b.push(((ev.expert[t] as number) / Math.exp(nb / tokens)) * 100)
    }
    const avg = (v: number[]) => v.reduce((x, y) => x + y, 0) / v.length
    mean.push(avg(a) - avg(b))
    worst.push(Math.min(...a) - Math.min(...b))
  }
  const ci = (v: number[]) => {
    v.sort((x, y) => x - y)
    return `[${(v[50] as number).toFixed(2)}, ${(v[1949] as number).toFixed(2)}]`
  }
  return { mean: ci(mean), worst: ci(worst) }
}

/** A cascade arm's share of prompts that skip the scoring pass, and the router's accuracy among them (pooled). */
function skipCell(sure: Scored['sure']): string {
  const pct = (a: number, b: number) => (b > 0 ? ((a / b) * 100).toFixed(1) : '–')
  return `${pct(sure.n, sure.all)} % | ${pct(sure.right, sure.n)} % (${sure.right}/${sure.n}) | ${pct(sure.likelihoodRight, sure.n)} %`
}

/** The arms (`--arms` picks by label prefix); each is a runner option set, default off. */
function arms(): LikelihoodArm[] {
  const out: LikelihoodArm[] = []
  for (const tau of [1, 1.5, 2, 3, 4])
    out.push({ label: `sum τ ${tau}`, options: { temperature: tau } })
  for (const tau of [0.1, 0.15, 0.2])
    out.push({ label: `per-token τ ${tau}`, options: { temperature: tau, perToken: true } })
  for (const b of [0.1, 0.2])
    out.push({ label: `sum τ 2 × router^${b}`, options: { temperature: 2, routerWeight: b } })
  for (const h of [0.9, 0.95])
    out.push({ label: `sum τ 2, top-1 above ${h}`, options: { temperature: 2, hardAbove: h } })
  // θ 0 is the MLP router alone (every prompt keeps its mix): the cascade's floor.
  for (const theta of [0, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999])
    out.push({
      label: `cascade: router above ${theta}, else τ 2`,
      options: { temperature: 2 },
      routerAbove: theta,
    })
  return out
}

async function main() {
  const args = process.argv.slice(2)
  const opt = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined)
  const split = opt('--split') === 'test' ? 'test' : 'validation'
  const packageDir = opt('--package')
  if (packageDir) PACKAGE = join(packageDir, 'model.onnx')
  const baselineDir = opt('--baseline-package')
  const recipe = await readRecipe('zoo/lm/recipe.yaml')
  const tasks = recipe.experts.map((e) => e.name)
  const profile = await LmProfile.load(join('zoo/lm/models'))
  const data = loadLmSplits(profile, tasks, split)
  const session = await openCpu(PACKAGE)
  const t0 = performance.now()
  const ev = await evidenceOf(
    session,
    data,
    recipe.experts.map((e) => e.model),
    split,
  )
  console.error(`evidence ready (${((performance.now() - t0) / 1000).toFixed(0)} s)`)
  if (args.includes('--diagnose')) diagnose(ev)
  const graph = new DecoderGraph(session, controlsOf(session.inputNames), tasks.length)
  const extra: LikelihoodArm[] = []
  if (args.includes('--fit')) {
    const rev = await routingEvidence(session, tasks)
    for (const perToken of [false, true])
      for (const fix of perToken ? [undefined] : [undefined, 2]) {
        const f = fitPrior(rev, perToken, fix)
        const round = (x: number) => Number(x.toFixed(3))
        const options: PromptLikelihoodOptions = {
          temperature: round(f.temperature),
          ...(perToken ? { perToken } : {}),
          logPrior: f.logPrior.map(round),
        }
        console.error(`fit ${JSON.stringify(options)} loss ${f.loss.toFixed(4)}`)
        extra.push({
          label: `fit ${perToken ? 'per-token' : 'sum'}${fix ? ` τ ${fix}` : ''}: ${JSON.stringify(options)}`,
          options,
        })
      }
  }
  // Diagnosis: route from the document's first n ids instead of its prompt (what a longer prompt would tell).
  for (const n of (opt('--prefix') ?? '').split(',').filter(Boolean).map(Number)) {
    const longer: SplitEvidence = { ...ev, docs: [] }
    for (const [t, d] of data.entries()) {
      const rows: DocEvidence[] = []
      for (const [i, doc] of d.docs.entries()) {
        const e = await promptEvidence(graph, doc.ids.slice(0, n))
        rows.push({
          ...(ev.docs[t]?.[i] as DocEvidence),
          promptNll: Array.from(e.nll),
          promptIds: Math.min(n, doc.ids.length),
        })
      }
      longer.docs.push(rows)
    }
    const scored = await score(graph, data, longer, { temperature: 2 })
    console.log(
      `likelihood on the document's first ${n} ids, τ 2: acc ${(scored.acc * 100).toFixed(1)}, mean ${(scored.norm.reduce((a, b) => a + b, 0) / scored.norm.length).toFixed(1)}, per domain ${scored.norm.map((x) => x.toFixed(1)).join(' / ')}`,
    )
  }
  const pick = opt('--arms')?.split(',')
  const chosen = [...arms(), ...extra].filter(
    (a) => !pick || pick.some((p) => a.label.startsWith(p)),
  )
  const rows: string[] = []
  // The committed package's setting (τ 2 on the sums): what every arm is compared with, paired by document; on
  // `--baseline-package`'s graph (with its own evidence) when given.
  let baseline: Scored
  if (baselineDir) {
    const path = join(baselineDir, 'model.onnx')
    const s = await openCpu(path)
    const experts = recipe.experts.map((e) => e.model)
    const bev = await evidenceOf(s, data, experts, split, path)
    baseline = await score(new DecoderGraph(s, controlsOf(s.inputNames), tasks.length), data, bev, {
      temperature: 2,
    })
    await s.release()
    const mean = baseline.norm.reduce((x, y) => x + y, 0) / baseline.norm.length
    rows.push(
      `| τ 2 on ${baselineDir} (baseline) | ${(baseline.acc * 100).toFixed(1)} | ${mean.toFixed(1)} | ${Math.min(...baseline.norm).toFixed(1)} | ${baseline.norm.map((x) => x.toFixed(1)).join(' | ')} | 0 | 0 | | | |`,
    )
  } else baseline = await score(graph, data, ev, { temperature: 2 })
  for (const a of chosen) {
    const t1 = performance.now()
    const scored = await score(graph, data, ev, a.options, a.routerAbove)
    const { norm, acc, sure } = scored
    const mean = norm.reduce((x, y) => x + y, 0) / norm.length
    const ci = bootstrap(data, ev, scored, baseline)
    rows.push(
      `| ${a.label} | ${(acc * 100).toFixed(1)} | ${mean.toFixed(1)} | ${Math.min(...norm).toFixed(1)} | ${norm.map((x) => x.toFixed(1)).join(' | ')} | ${ci.mean} | ${ci.worst} | ${a.routerAbove === undefined ? ' | | ' : skipCell(sure)} |`,
    )
    console.error(`${rows.at(-1)} ${((performance.now() - t1) / 1000).toFixed(0)} s`)
  }
  console.log(
    `${PACKAGE}${baselineDir ? ` vs ${baselineDir}` : ''}, ${split}, expert perplexity ${ev.expert.map((p) => p.toFixed(2)).join(' / ')}; normalised % = expert / routed × 100`,
  )
  console.log(
    `| arm | router acc. % | mean normalised % | worst | ${tasks.join(' | ')} | Δ mean vs τ 2, 95 % | Δ worst vs τ 2, 95 % | cascade: skip scoring | router right among those | likelihood right among those |`,
  )
  console.log(
    `| --- | --: | --: | --: | ${tasks.map(() => '--:').join(' | ')} | --: | --: | --: | --: | --: |`,
  )
  for (const r of rows) console.log(r)
  await session.release()
}

// Run as a script only: lm-bag-probe.ts imports the evidence and scoring from here.
if (process.argv[1] === import.meta.filename) await main()
