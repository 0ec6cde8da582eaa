/**
 * Generation speed (issue 14): the runner's engine (gpu-runner/src/generate) on the committed LM twin package,
 * decode tokens/s and time to first token at concurrency 1, 8 and 32, the twin (each sequence routed from its
 * prompt at prefill as the runner serves it: by each expert's likelihood of the prompt, the package's
 * `router.promptLikelihood`, so TTFT includes that scoring pass; that mix held for every decode step) against the
 * shared model (its plain decoder graph, lm-shared-model.ts; until 2026-12-06 this arm was the twin graph at
 * all-zero weights, which still computes every correction), in one run, interleaved by round so both see the same
 * load. The plain graph must decode the twin graph's zero-weight tokens (checked before the timed rounds).
 * The graph is opened as the runner opens it (decoderAsServed): identical initializers shared, new keys and values
 * exposed as outputs, and the decode session on the decode graph (decode-graph.ts: each correction's σ in its
 * factor, the vector deltas in one product carrying the shared biases and LayerNorms).
 *
 * Each cell submits `c` held-out prompts of zoo/lm/data/prompts.jsonl at once; every sequence decodes exactly
 * TOKENS tokens (stop ids off, greedy), so both arms do the same work. Continuous batching puts all `c` rows in
 * each decode pass. TTFT is submit → first token (queueing + prefill, prefills spread over steps by the 512-token
 * budget); decode tokens/s is tokens after the first / time from first to last token, per sequence and summed.
 *
 * A third arm, *twin, past rebuilt*, runs the same twin requests on an engine with `reuseBatch: false`: every
 * decode pass gathers every row's cache into a fresh padded past, as the engine did before the batched past
 * persisted between passes. Its ratio to *twin* is the before/after of that change, measured in the same run.
 * A fourth, *twin, graph as built*, runs them on the package's graph without those rewrites: every decode pass
 * fetches the whole `present` (onnxruntime-node copies it into fresh memory) and repeats the per-site Gathers.
 * Its ratio to *twin* is the before/after of the runner's load-time rewrites: decoderAsServed, and the likelihood
 * graph (that arm scores prompts from the logits, as the runner did before either).
 * A fifth, *twin, scored from logits*, runs them on the same graph as *twin* but scores each prompt's likelihood
 * from the fetched [rows, S, V] logits with a log-softmax in JavaScript (`likelihoodInGraph: false`) instead of in
 * the likelihood graph (likelihood-graph.ts, [rows, S] log-probabilities back): its ratio to *twin, ungrouped*
 * is the before/after of that change, TTFT above all.
 * A sixth, *twin, ungrouped*, scores prompts in the likelihood graph as derived (every one-hot row multiplying all
 * T·r stacked ranks) where *twin* scores them in the grouped likelihood graph the runner opens
 * (grouped-likelihood-graph.ts: rows expert-major, each multiplying its own expert's r ranks): its ratio to *twin*
 * is the before/after of the grouping.
 * A seventh, *twin, mix given*, sends each prompt with the mix *twin* routes it to as an explicit mix (a client's
 * `twinserve.experts`), found once before the timed rounds: the same decode work, no scoring pass. Its batching
 * ratio is the engine's with the twin graph; the gap to *twin*'s is what routing by likelihood costs.
 * An eighth, *mix given, graph as served*, sends the same on the graph as served without the decode graph's rewrite
 * (and without the merged decode graph): its ratio to *mix given, factored* is the before/after of that rewrite.
 * The twin engines run as the runner serves them, the merged decode graph included (merged-decode-graph.ts: a decode
 * pass whose rows all apply one mix runs with that mix merged into the matrices); a ninth arm, *mix given,
 * factored*, sends the mixes of *mix given* to an engine that never merges (`merge: false`): its ratio to *mix
 * given* is the before/after of the merged decode graph.
 *
 *   npm run bench:generate                  # writes the bench:generate section of bench/RESULTS.md
 *   npm run bench:generate -- --no-write    # prints it only
 *   npm run bench:generate -- --no-write --package dir   # another build of the LM twin (e.g. with topk_gather)
 *   npm run bench:generate -- --no-write --prefill-budget 2048   # the engine's prompt tokens per step (default 512)
 * `--package` swaps the package only (tokenizer, prompts and models stay zoo/lm's); it never writes RESULTS.md.
 * @module
 */
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  DecoderGraph,
  decodeGraph,
  decoderAsServed,
  GenerationEngine,
  groupedLikelihoodGraph,
  LmProfile,
  likelihoodGraph,
  mergedDecodeGraph,
  withoutNewKv,
} from '@twinserve/gpu-runner/generate'
import { loadPackage } from '@twinserve/gpu-runner/package'
import { openSession } from '@twinserve/gpu-runner/runtime'
import { checkContract, type RowControls } from '@twinserve/gpu-runner/twin-contract'
import { gatherOf } from './lm-package.ts'
import { lmSharedModel } from './lm-shared-model.ts'
import { heldOutPrompts, timedGreedy } from './lm-workload.ts'
import { fmt, machine, markLoad, summarize, table, writeSection } from './perf/report.ts'

const REPO = join(import.meta.dirname, '..')
const LM = join(REPO, 'zoo/lm')
const CONCURRENCY = [1, 8, 32] as const
const TOKENS = 48
/**
 * Concurrency 1 runs this many sequences in a row per round: at 4 (until 2026-12-06) its aggregate moved by a quarter
 * between runs (one sequence is ~80 ms), which was most of the spread in the c32 ÷ c1 ratio.
 */
const C1_SEQUENCES = 16
const ARMS = {
  twin: { useRouter: 1 } as RowControls,
  shared: {} as RowControls,
  rebuilt: { useRouter: 1 } as RowControls,
  asBuilt: { useRouter: 1 } as RowControls,
  logits: { useRouter: 1 } as RowControls,
  ungrouped: { useRouter: 1 } as RowControls,
  // Per prompt: the mix twin routes it to (mixGiven), sent explicitly.
  given: {} as RowControls,
  // The same, on the graph as served (before the decode graph's rewrite).
  servedGiven: {} as RowControls,
  // The same, on the decode graph, never merged (before the merged decode graph).
  givenFactored: {} as RowControls,
}
type Arm = keyof typeof ARMS

const { values } = parseArgs({
  options: {
    'no-write': { type: 'boolean' },
    rounds: { type: 'string', default: '2' },
    package: { type: 'string' },
    // The engine's prompt tokens per step (the runner's --prefill-tokens-per-step, default 512).
    'prefill-budget': { type: 'string', default: '512' },
  },
})
if ((values.package || values['prefill-budget'] !== '512') && !values['no-write'])
  throw new Error(
    '--package and --prefill-budget measure a variant: pass --no-write (RESULTS.md describes zoo/lm/package at 512)',
  )
const ROUNDS = Number(values.rounds)
const PREFILL_BUDGET = Number(values['prefill-budget'])
if (!Number.isInteger(PREFILL_BUDGET) || PREFILL_BUDGET < 1)
  throw new Error(
    `--prefill-budget takes a positive whole number of tokens, not '${values['prefill-budget']}'`,
  )

// Round-robin over the domains: every cell sees a mixed load, as routing would (until 2026-12-06 the cells took
// the prompts in file order, mostly emails).
const prompts = heldOutPrompts('round-robin')

const m = machine()
const PACKAGE = values.package ?? join(LM, 'package')
const pkg = await loadPackage(PACKAGE)
const gather = gatherOf(pkg.manifest.recipe)
// As the runner opens it (model/load-model.ts): identical initializers shared, new keys and values exposed.
const served = decoderAsServed(pkg.model)
// The decode session's graph (load-model.ts): the decode graph, or the graph as served where it does not apply.
const rewritten = decodeGraph(served)
if (!('bytes' in rewritten)) console.error(`no decode graph (${rewritten.unavailable})`)
const opened = await openSession('bytes' in rewritten ? rewritten.bytes : served, {
  provider: 'auto',
})
const servedOpened = await openSession(served, { provider: opened.provider })
const asBuilt = await openSession(pkg.model, { provider: opened.provider })
// The likelihood graph, as load-model.ts opens it for a package routed by the prompt's likelihood.
const derived = likelihoodGraph(served)
if (!('bytes' in derived)) throw new Error(`no likelihood graph: ${derived.unavailable}`)
const scorer = await openSession(derived.bytes, { provider: opened.provider })
const controls = checkContract(pkg.manifest, withoutNewKv(opened.session), new Map())
const profile = await LmProfile.load(join(LM, 'models'))
const T = pkg.manifest.experts.length
// The grouped likelihood graph, as load-model.ts opens it when the scoring pass has no router row.
const grouping =
  (pkg.manifest.router.promptLikelihood?.routerWeight ?? 0) !== 0
    ? { unavailable: 'router_weight ≠ 0' }
    : groupedLikelihoodGraph(derived.bytes, T)
const groupedScorer =
  'bytes' in grouping
    ? (await openSession(grouping.bytes, { provider: opened.provider })).session
    : undefined
if (!groupedScorer)
  console.error(
    `no grouped likelihood graph (${'unavailable' in grouping ? grouping.unavailable : ''}): twin and ungrouped are the same`,
  )
// The merged decode graph and its merge graph, as load-model.ts opens them for a model the runner generates with.
const mergedBytes = mergedDecodeGraph(served, T)
if (!('decode' in mergedBytes))
  throw new Error(`no merged decode graph: ${mergedBytes.unavailable}`)
const merged = {
  decode: (await openSession(mergedBytes.decode, { provider: opened.provider })).session,
  merge: (await openSession(mergedBytes.merge, { provider: opened.provider })).session,
  matrices: mergedBytes.matrices,
}
const ungroupedGraph = new DecoderGraph(opened.session, controls, T, scorer.session, false, merged)
const graph = groupedScorer
  ? new DecoderGraph(opened.session, controls, T, groupedScorer, true, merged)
  : ungroupedGraph
const like = pkg.manifest.router.promptLikelihood
const options = {
  maxContext: profile.maxContext,
  maxSequences: 64,
  maxBytes: 256 * 1024 * 1024,
  prefillTokensPerStep: PREFILL_BUDGET,
  detokenizer: profile,
  ...(like ? { promptLikelihood: like } : {}),
}
const engine = new GenerationEngine(graph, options)
const rebuiltEngine = new GenerationEngine(graph, { ...options, reuseBatch: false })
const asBuiltEngine = new GenerationEngine(new DecoderGraph(asBuilt.session, controls, T), options)
const logitsEngine = new GenerationEngine(graph, { ...options, likelihoodInGraph: false })
const ungroupedEngine = new GenerationEngine(ungroupedGraph, options)
const servedGivenEngine = new GenerationEngine(
  new DecoderGraph(servedOpened.session, controls, T),
  options,
)
// The shared model's plain graph (no twin inputs), opened as the runner opens a plain decoder.
const sharedSession = await openSession(decoderAsServed(await lmSharedModel()), {
  provider: opened.provider,
})
const sharedEngine = new GenerationEngine(new DecoderGraph(sharedSession.session, [], T), options)
const givenFactoredEngine = new GenerationEngine(graph, { ...options, merge: false })
const ENGINES: Record<Arm, GenerationEngine> = {
  twin: engine,
  shared: sharedEngine,
  rebuilt: rebuiltEngine,
  asBuilt: asBuiltEngine,
  logits: logitsEngine,
  ungrouped: ungroupedEngine,
  given: engine,
  servedGiven: servedGivenEngine,
  givenFactored: givenFactoredEngine,
}
const engineOf = (arm: Arm) => ENGINES[arm]

interface Cell {
  ttftMs: number[]
  perSeqTps: number[]
  aggregateTps: number[]
  stepMs: number[]
  /** Decode passes whose past was rebuilt from the sequences' caches, per pass. */
  gatherShare: number[]
  /** Tokens per CPU-second of this process (every thread): the work per token, whatever else runs on the machine. */
  cpuTps: number[]
}
const cells = new Map<string, Cell>()
const cellOf = (arm: Arm, c: number): Cell => {
  const key = `${arm}|${c}`
  let cell = cells.get(key)
  if (!cell) {
    cell = { ttftMs: [], perSeqTps: [], aggregateTps: [], stepMs: [], gatherShare: [], cpuTps: [] }
    cells.set(key, cell)
  }
  return cell
}

/**
 * The mix twin applies to each held-out prompt, by routing every prompt once (one token each, 32 at a time) before
 * the timed rounds: *mix given* sends it back as an explicit mix.
 */
const mixGiven = new Map<string, number[]>()
for (let i = 0; i < prompts.length; i += 32)
  await Promise.all(
    prompts.slice(i, i + 32).map(async (text) => {
      for await (const e of engine.submit({
        promptIds: profile.encodePrompt(text),
        maxTokens: 1,
        sampling: { temperature: 0, topP: 1, topK: 0 },
        stopTokenIds: [],
        controls: ARMS.twin,
      }))
        if (e.type === 'start' && e.expertWeights) mixGiven.set(text, Array.from(e.expertWeights))
    }),
  )
const controlsFor = (arm: Arm, text: string): RowControls => {
  if (arm !== 'given' && arm !== 'servedGiven' && arm !== 'givenFactored') return ARMS[arm]
  const mix = mixGiven.get(text)
  if (!mix) throw new Error(`no routed mix for the prompt ${JSON.stringify(text)}`)
  return { mixWeights: mix }
}

// The plain graph is the twin graph at zero weights: the same greedy tokens for a few prompts of every domain.
for (const text of prompts.slice(0, 10)) {
  const tokens = async (e: GenerationEngine, controls: RowControls) => {
    let out = ''
    for await (const ev of e.submit({
      promptIds: profile.encodePrompt(text),
      maxTokens: 16,
      sampling: { temperature: 0, topP: 1, topK: 0 },
      stopTokenIds: [],
      controls,
    }))
      if (ev.type === 'end') out = ev.text
    return out
  }
  const [plain, zero] = [await tokens(sharedEngine, {}), await tokens(engine, {})]
  if (plain !== zero)
    throw new Error(
      `the shared model's plain graph and the twin graph at zero weights disagree on ${JSON.stringify(text)}: ${JSON.stringify(plain)} against ${JSON.stringify(zero)}`,
    )
}

let next = 0
async function runCell(arm: Arm, c: number): Promise<void> {
  const cell = cellOf(arm, c)
  const engine = engineOf(arm)
  const cpu0 = process.cpuUsage()
  const started = performance.now()
  const passes0 = engine.counters.decodePasses
  const gathers0 = engine.counters.gathers
  const runs = Array.from({ length: c }, async () => {
    const text = prompts[next++ % prompts.length] ?? ''
    const { t0, first, last, n } = await timedGreedy(
      engine,
      profile.encodePrompt(text),
      TOKENS,
      controlsFor(arm, text),
    )
    cell.ttftMs.push(first - t0)
    cell.perSeqTps.push(((n - 1) * 1000) / (last - first))
    return { first, last }
  })
  const times = await Promise.all(runs)
  const lastFirst = Math.max(...times.map((t) => t.first))
  const lastEnd = Math.max(...times.map((t) => t.last))
  const wall = lastEnd - started
  const cpu = process.cpuUsage(cpu0)
  cell.cpuTps.push((c * TOKENS * 1e6) / (cpu.user + cpu.system))
  cell.aggregateTps.push((c * TOKENS * 1000) / wall)
  const passes = Math.max(1, engine.counters.decodePasses - passes0)
  // Once the last sequence has its first token, every step is a decode pass (no prefill, no likelihood scoring):
  // it needs TOKENS − 1 more, one token each.
  cell.stepMs.push((lastEnd - lastFirst) / (TOKENS - 1))
  cell.gatherShare.push((engine.counters.gathers - gathers0) / passes)
}

// Warm-up: the first runs pay for onnxruntime's allocations.
await runCell('twin', 8)
await runCell('shared', 8)
await runCell('rebuilt', 8)
await runCell('asBuilt', 8)
await runCell('logits', 8)
await runCell('ungrouped', 8)
await runCell('given', 8)
await runCell('servedGiven', 8)
await runCell('givenFactored', 8)
cells.clear()
const ORDERS: readonly Arm[][] = [
  [
    'twin',
    'given',
    'givenFactored',
    'servedGiven',
    'ungrouped',
    'logits',
    'shared',
    'rebuilt',
    'asBuilt',
  ],
  [
    'asBuilt',
    'rebuilt',
    'shared',
    'logits',
    'ungrouped',
    'servedGiven',
    'givenFactored',
    'given',
    'twin',
  ],
]
for (let r = 0; r < ROUNDS; r++)
  for (const c of CONCURRENCY)
    for (const arm of ORDERS[r % 2] ?? []) {
      // Concurrency 1: several sequences one after another, so its numbers are not one sequence's.
      for (let i = 0; i < (c === 1 ? C1_SEQUENCES : 1); i++) await runCell(arm, c)
      markLoad(m, `${arm} c=${c} round ${r + 1}`)
    }

const mean = (xs: number[]) => summarize(xs).mean
const rows = CONCURRENCY.map((c) => {
  const t = cellOf('twin', c)
  const s = cellOf('shared', c)
  const b = cellOf('rebuilt', c)
  const f = cellOf('asBuilt', c)
  const l = cellOf('logits', c)
  const u = cellOf('ungrouped', c)
  const g = cellOf('given', c)
  const v = cellOf('servedGiven', c)
  const k = cellOf('givenFactored', c)
  return [
    String(c),
    fmt(mean(t.aggregateTps), 0),
    fmt(mean(s.aggregateTps), 0),
    `${(mean(s.aggregateTps) / mean(t.aggregateTps)).toFixed(2)}×`,
    fmt(summarize(t.perSeqTps).p50, 0),
    fmt(summarize(s.perSeqTps).p50, 0),
    fmt(mean(t.stepMs), 2),
    fmt(mean(s.stepMs), 2),
    `${(mean(t.stepMs) / mean(s.stepMs)).toFixed(2)}×`,
    fmt(summarize(t.ttftMs).p50, 1),
    fmt(summarize(s.ttftMs).p50, 1),
    fmt(mean(b.aggregateTps), 0),
    `${(mean(t.aggregateTps) / mean(b.aggregateTps)).toFixed(2)}×`,
    fmt(mean(f.aggregateTps), 0),
    `${(mean(t.aggregateTps) / mean(f.aggregateTps)).toFixed(2)}×`,
    fmt(mean(l.aggregateTps), 0),
    `${(mean(t.aggregateTps) / mean(l.aggregateTps)).toFixed(2)}×`,
    fmt(summarize(l.ttftMs).p50, 1),
    fmt(mean(u.aggregateTps), 0),
    `${(mean(t.aggregateTps) / mean(u.aggregateTps)).toFixed(2)}×`,
    fmt(summarize(u.ttftMs).p50, 1),
    fmt(mean(g.aggregateTps), 0),
    `${(mean(t.aggregateTps) / mean(g.aggregateTps)).toFixed(2)}×`,
    fmt(summarize(g.ttftMs).p50, 1),
    fmt(mean(g.stepMs), 2),
    fmt(mean(k.stepMs), 2),
    `${(mean(g.stepMs) / mean(k.stepMs)).toFixed(2)}×`,
    fmt(mean(v.stepMs), 2),
    `${(mean(k.stepMs) / mean(v.stepMs)).toFixed(2)}×`,
    fmt(mean(t.cpuTps), 0),
    fmt(mean(s.cpuTps), 0),
    fmt(mean(b.cpuTps), 0),
    fmt(mean(f.cpuTps), 0),
    fmt(mean(l.cpuTps), 0),
    fmt(mean(u.cpuTps), 0),
    fmt(mean(g.cpuTps), 0),
    fmt(mean(k.cpuTps), 0),
    fmt(mean(v.cpuTps), 0),
    `${fmt(mean(t.gatherShare) * 100, 0)} % / ${fmt(mean(b.gatherShare) * 100, 0)} %`,
  ]
})
const agg = (arm: Arm, c: number) => mean(cellOf(arm, c).aggregateTps)
const scaling = (arm: Arm) => (agg(arm, 32) / agg(arm, 1)).toFixed(1)
const cpuOf = (arm: Arm, c: number) => mean(cellOf(arm, c).cpuTps)
const cpuScaling = (arm: Arm) => (cpuOf(arm, 32) / cpuOf(arm, 1)).toFixed(1)
const end = m.loads.at(-1)?.load ?? Number.NaN
const ttft = (arm: Arm, c: number) => summarize(cellOf(arm, c).ttftMs).p50

const md = [
  '## Generation: decode tokens/s and time to first token, twin vs shared (`npm run bench:generate`)',
  '',
  `${values.package ?? 'zoo/lm/package'} (lm-twin: 3-layer d-128 decoder, 5 experts, rank-48 float16 exclusive factors${gather ? `, \`topk_gather: ${gather}\`` : ''}) in the runner's generation engine (gpu-runner/src/generate), ${TOKENS} greedy tokens per sequence, held-out prompts taken round-robin over the five domains, ${ROUNDS} interleaved rounds (concurrency 1: ${C1_SEQUENCES} sequences in a row per round). _twin_: as served, each sequence routed at prefill by each expert's likelihood of its prompt (the package's \`router.prompt_likelihood\`: one more pass of T rows per prompt, in TTFT, on the grouped likelihood graph, which returns each position's log-probability of the next prompt token instead of the logits, rows expert-major so that each one-hot row multiplies only its own expert's ranks), the mix held as explicit mix_weights for every decode step, on the graph as the runner opens it (\`decoderAsServed\`: identical initializers shared, new keys and values exposed as outputs; the decode session on the decode graph, \`decodeGraph\`: the vector deltas in one product carrying the shared biases and LayerNorms, and each correction's σ folded into its factor where the package stores it in float32, which zoo/lm does not); _shared_: the shared model itself, the plain decoder graph with the shared merge's weights (built by \`bench/lm-shared-model.ts\`; zoo/lm/package leaves that file out, and until 2026-12-06 this arm was the twin graph at all-zero weights, which still computes every correction), checked to decode the twin graph's zero-weight tokens; _past rebuilt_: twin on an engine that gathers every row's cache into a fresh past on every pass (\`reuseBatch: false\`, the engine before the batched past persisted); _graph as built_: twin on the package's graph without those rewrites, every pass fetching the whole \`present\` and repeating the per-site Gathers, prompts scored from the logits; _scored from logits_: twin scoring each prompt from the fetched [rows, S, V] logits with a log-softmax in JavaScript (\`likelihoodInGraph: false\`, the path before the likelihood graph); _ungrouped_: twin scoring in the likelihood graph as derived, every one-hot row multiplying all T·r stacked ranks (the path before the grouped likelihood graph); _mix given_: twin with each prompt's routed mix sent as an explicit mix (a client's \`twinserve.experts\`), so the same decode work and no scoring pass; _mix given, factored_: the same on an engine that never merges (\`merge: false\`); _mix given, graph as served_: the same on the graph as served, without the decode graph's rewrite (factored). Every other twin arm runs with the merged decode graph as the runner does (merged-decode-graph.ts: a decode pass whose rows all apply one mix runs with that mix merged into the matrices, merged when the batch has ≥ 16 steps left, 4 mixes kept). Step = one batched decode pass (all running rows), timed after the last sequence's first token (decode passes only).`,
  '',
  table(
    [
      'concurrency',
      'aggregate tok/s twin',
      'shared',
      'shared/twin',
      'per-seq tok/s twin (p50)',
      'shared',
      'step ms twin',
      'shared',
      'twin/shared step',
      'TTFT ms twin (p50)',
      'shared',
      'aggregate tok/s twin, past rebuilt',
      'twin / rebuilt',
      'aggregate tok/s twin, graph as built',
      'twin / as built',
      'aggregate tok/s twin, scored from logits',
      'twin / logits',
      'TTFT ms logits (p50)',
      'aggregate tok/s twin, ungrouped',
      'twin / ungrouped',
      'TTFT ms ungrouped (p50)',
      'aggregate tok/s twin, mix given',
      'twin / given',
      'TTFT ms given (p50)',
      'step ms given',
      'step ms given, factored',
      'given / factored step',
      'step ms given, graph as served',
      'factored / as served step',
      'tok per CPU-s twin',
      'shared',
      'rebuilt',
      'as built',
      'logits',
      'ungrouped',
      'given',
      'given, factored',
      'given, as served',
      'passes gathering: twin / rebuilt',
    ],
    rows,
  ),
  '',
  `- **Continuous batching:** aggregate tokens/s at concurrency 32 is ${scaling('twin')}× concurrency 1's for twin, ${scaling('shared')}× for shared (goal ≥ 4×), ${scaling('given')}× for twin with the mix given (no scoring pass); with the past rebuilt every pass (the engine before the batched past persisted) ${scaling('rebuilt')}×.`,
  `- **Per CPU-second** (tokens ÷ this process's CPU time, all threads: what a token costs, independent of other jobs' load): concurrency 32 gives ${cpuScaling('twin')}× the tokens per CPU-second of concurrency 1 for twin, ${cpuScaling('shared')}× for shared, ${cpuScaling('given')}× with the mix given, ${cpuScaling('rebuilt')}× with the past rebuilt every pass.`,
  `- **Graph as served:** twin ÷ the same on the graph as built (every pass fetching the whole \`present\`, the per-site Gathers repeated), aggregate tokens/s: ${CONCURRENCY.map((c) => `${(agg('twin', c) / agg('asBuilt', c)).toFixed(2)}× at ${c}`).join(', ')}; tokens per CPU-second: ${CONCURRENCY.map((c) => `${(cpuOf('twin', c) / cpuOf('asBuilt', c)).toFixed(2)}× at ${c}`).join(', ')}; concurrency 32 ÷ 1 on the graph as built: ${scaling('asBuilt')}× aggregate, ${cpuScaling('asBuilt')}× per CPU-second.`,
  `- **Likelihood graph:** twin ungrouped (prompts scored in the likelihood graph, every row multiplying all ranks) ÷ the same scoring from the fetched logits with a log-softmax in JavaScript, TTFT p50: ${CONCURRENCY.map((c) => `${(ttft('ungrouped', c) / ttft('logits', c)).toFixed(2)}× at ${c}`).join(', ')}; aggregate tokens/s: ${CONCURRENCY.map((c) => `${(agg('ungrouped', c) / agg('logits', c)).toFixed(2)}× at ${c}`).join(', ')}; tokens per CPU-second: ${CONCURRENCY.map((c) => `${(cpuOf('ungrouped', c) / cpuOf('logits', c)).toFixed(2)}× at ${c}`).join(', ')}; concurrency 32 ÷ 1 scoring from the logits: ${scaling('logits')}× aggregate, ${cpuScaling('logits')}× per CPU-second.`,
  `- **Grouped likelihood graph:** twin (prompts scored in the grouped likelihood graph) ÷ the same in the ungrouped one, TTFT p50: ${CONCURRENCY.map((c) => `${(ttft('twin', c) / ttft('ungrouped', c)).toFixed(2)}× at ${c}`).join(', ')}; aggregate tokens/s: ${CONCURRENCY.map((c) => `${(agg('twin', c) / agg('ungrouped', c)).toFixed(2)}× at ${c}`).join(', ')}; tokens per CPU-second: ${CONCURRENCY.map((c) => `${(cpuOf('twin', c) / cpuOf('ungrouped', c)).toFixed(2)}× at ${c}`).join(', ')}; concurrency 32 ÷ 1 ungrouped: ${scaling('ungrouped')}× aggregate, ${cpuScaling('ungrouped')}× per CPU-second.`,
  `- **Persistent batched past:** twin ÷ the same with the past rebuilt every pass, aggregate tokens/s: ${CONCURRENCY.map((c) => `${(agg('twin', c) / agg('rebuilt', c)).toFixed(2)}× at ${c}`).join(', ')}; tokens per CPU-second: ${CONCURRENCY.map((c) => `${(cpuOf('twin', c) / cpuOf('rebuilt', c)).toFixed(2)}× at ${c}`).join(', ')}.`,
  `- **Routing by likelihood:** twin ÷ the same mixes given in the request (no scoring pass), aggregate tokens/s: ${CONCURRENCY.map((c) => `${(agg('twin', c) / agg('given', c)).toFixed(2)}× at ${c}`).join(', ')}; tokens per CPU-second: ${CONCURRENCY.map((c) => `${(cpuOf('twin', c) / cpuOf('given', c)).toFixed(2)}× at ${c}`).join(', ')}; TTFT p50: ${CONCURRENCY.map((c) => `${fmt(ttft('twin', c), 1)} against ${fmt(ttft('given', c), 1)} ms at ${c}`).join(', ')}.`,
  `- **Decode graph:** mix given, factored, on the decode graph ÷ the same on the graph as served, decode step: ${CONCURRENCY.map((c) => `${(mean(cellOf('givenFactored', c).stepMs) / mean(cellOf('servedGiven', c).stepMs)).toFixed(2)}× at ${c}`).join(', ')}; tokens per CPU-second: ${CONCURRENCY.map((c) => `${(cpuOf('givenFactored', c) / cpuOf('servedGiven', c)).toFixed(2)}× at ${c}`).join(', ')}.`,
  `- **Merged decode graph:** mix given as served ÷ the same factored, decode step: ${CONCURRENCY.map((c) => `${(mean(cellOf('given', c).stepMs) / mean(cellOf('givenFactored', c).stepMs)).toFixed(2)}× at ${c}`).join(', ')}; aggregate tokens/s: ${CONCURRENCY.map((c) => `${(agg('given', c) / agg('givenFactored', c)).toFixed(2)}× at ${c}`).join(', ')}; tokens per CPU-second: ${CONCURRENCY.map((c) => `${(cpuOf('given', c) / cpuOf('givenFactored', c)).toFixed(2)}× at ${c}`).join(', ')}. Decode step ÷ the shared model's, mix given: ${CONCURRENCY.map((c) => `${(mean(cellOf('given', c).stepMs) / mean(cellOf('shared', c).stepMs)).toFixed(2)}× (factored ${(mean(cellOf('givenFactored', c).stepMs) / mean(cellOf('shared', c).stepMs)).toFixed(2)}×, graph as served ${(mean(cellOf('servedGiven', c).stepMs) / mean(cellOf('shared', c).stepMs)).toFixed(2)}×) at ${c}`).join(', ')}. Every sequence has its own routed mix here, so only passes with one row left merge: at concurrency 1 all of them; a pinned mix merges at any concurrency (\`npm run bench:merged-decode\`).`,
  `- **Twin overhead:** the twin decode step costs ${(mean(cellOf('twin', 1).stepMs) / mean(cellOf('shared', 1).stepMs)).toFixed(2)}× the shared model's at concurrency 1 and ${(mean(cellOf('twin', 32).stepMs) / mean(cellOf('shared', 32).stepMs)).toFixed(2)}× at 32 (goal ≤ 1.3×).`,
  `- **Machine:** ${m.nproc} cores, ${m.cpu}, ${m.memGb} GB; Node ${m.node}; onnxruntime-node ${m.ort}; provider ${opened.provider}${opened.fallbackReason ? ` (CUDA: ${opened.fallbackReason})` : ''}, default intra-op threads; load average ${fmt(m.loadStart, 1)} at start, ${fmt(end, 1)} at the end (shared machine: other jobs run beside it).`,
].join('\n')

console.log(md)
if (!values['no-write'])
  await writeSection(join(import.meta.dirname, 'RESULTS.md'), 'bench:generate', md)
