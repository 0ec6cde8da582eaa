/**
 * The merged decode graph (issue 14, speed; gpu-runner/src/generate/merged-decode-graph.ts) in the runner's
 * generation engine on zoo/lm/package: a decode pass whose rows all apply one mix runs on the decoder with that mix
 * merged into its matrices (merged once per mix, ~4 ms, kept for the next sequences of that mix), instead of the
 * factored corrections. Four engines over the sessions the runner opens (loadModel, sessions on the event loop):
 * - _shared_: the shared model's plain decoder graph (lm-shared-model.ts), the yardstick;
 * - _factored_: the twin decoding factored always (`merge: false`: the engine before the merged decode graph);
 * - _merged, not baked_ (`unbaked`): merging on, baking off (`maxBaked: 0`: the engine before baked mixes);
 * - _merged_: the twin as the runner now serves it (`merge` defaults: a mix merged when the batch has ≥ 16 steps
 *   left, 4 mixes kept, a mix that ran half of the last 128 merged passes baked into a session of its own, one at
 *   a time: baked-mix-graph.ts).
 * Two workloads, each sequence TOKENS greedy tokens from a held-out prompt (round-robin over the domains):
 * - _routed_: each prompt with the mix the package's likelihood routing gives it, sent as an explicit mix (found once
 *   before the timed rounds), so every sequence has its own mix, as routed traffic has;
 * - _pinned_: every prompt with one tenant's mix ({emails 0.6, speeches 0.4}).
 * Concurrency 1 (C1_SEQUENCES sequences in a row), 8 and 32; rounds interleave the engines (order reversed every
 * other round). Step = one batched decode pass, timed after the last sequence's first token (decode passes only;
 * a merge falls in the first of them).
 *
 *   npm run bench:merged-decode                 # writes its section of bench/RESULTS.md
 *   npm run bench:merged-decode -- --no-write   # prints it only
 * @module
 */
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  DecoderGraph,
  decoderAsServed,
  GenerationEngine,
  LmProfile,
} from '@twinserve/gpu-runner/generate'
import { loadModel } from '@twinserve/gpu-runner/model'
import { openSession } from '@twinserve/gpu-runner/runtime'
import type { RowControls } from '@twinserve/gpu-runner/twin-contract'
import { lmSharedModel } from './lm-shared-model.ts'
import { heldOutPrompts, timedGreedy } from './lm-workload.ts'
import { fmt, machine, markLoad, summarize, table, writeSection } from './perf/report.ts'

const LM = join(import.meta.dirname, '../zoo/lm')
const CONCURRENCY = [1, 8, 32] as const
const TOKENS = 48
const C1_SEQUENCES = 16
const PINNED = [0.6, 0.4, 0, 0, 0]
const ENGINE_NAMES = ['shared', 'factored', 'unbaked', 'merged'] as const
const WORKLOADS = ['routed', 'pinned'] as const
type EngineName = (typeof ENGINE_NAMES)[number]
type Workload = (typeof WORKLOADS)[number]

const { values } = parseArgs({
  options: {
    'no-write': { type: 'boolean' },
    rounds: { type: 'string', default: '3' },
  },
})
const ROUNDS = Number(values.rounds)

const m = machine()
const prompts = heldOutPrompts('round-robin')
const model = await loadModel(join(LM, 'package'), {
  provider: 'auto',
  sessionThreads: false,
  mergeCache: { maxEntries: 1, maxBytes: 1 << 20 },
})
const { session, controls, likelihood, likelihoodGrouped, merged } = model.twinGraph
if (!merged) throw new Error(`no merged decode graph: ${model.mergedDecode}`)
const T = model.manifest.experts.length
const profile = await LmProfile.load(join(LM, 'models'))
const like = model.manifest.router.promptLikelihood
const options = {
  maxContext: profile.maxContext,
  maxSequences: 64,
  maxBytes: 256 * 1024 * 1024,
  prefillTokensPerStep: 512,
  detokenizer: profile,
  ...(like ? { promptLikelihood: like } : {}),
}
const twin = new DecoderGraph(session, controls, T, likelihood, likelihoodGrouped, merged)
const sharedSession = await openSession(decoderAsServed(await lmSharedModel()), {
  provider: model.provider,
})
const engines: Record<EngineName, GenerationEngine> = {
  shared: new GenerationEngine(new DecoderGraph(sharedSession.session, [], T), options),
  factored: new GenerationEngine(twin, { ...options, merge: false }),
  unbaked: new GenerationEngine(twin, { ...options, merge: { maxBaked: 0 } }),
  merged: new GenerationEngine(twin, options),
}

// Each prompt's routed mix, found once by routing it as the runner does (one token each, 32 at a time).
const routedMix = new Map<string, number[]>()
for (let i = 0; i < prompts.length; i += 32)
  await Promise.all(
    prompts.slice(i, i + 32).map(async (text) => {
      for await (const e of engines.factored.submit({
        promptIds: profile.encodePrompt(text),
        maxTokens: 1,
        sampling: { temperature: 0, topP: 1, topK: 0 },
        stopTokenIds: [],
        controls: { useRouter: 1 },
      }))
        if (e.type === 'start' && e.expertWeights) routedMix.set(text, Array.from(e.expertWeights))
    }),
  )
const controlsFor = (engine: EngineName, w: Workload, text: string): RowControls => {
  if (engine === 'shared') return {}
  if (w === 'pinned') return { mixWeights: PINNED }
  const mix = routedMix.get(text)
  if (!mix) throw new Error(`no routed mix for ${JSON.stringify(text)}`)
  return { mixWeights: mix }
}

interface Cell {
  ttftMs: number[]
  aggregateTps: number[]
  stepMs: number[]
  cpuTps: number[]
  merges: number
  mergedPasses: number
  bakedPasses: number
  passes: number
}
const cells = new Map<string, Cell>()
const cellOf = (e: EngineName, w: Workload, c: number): Cell => {
  const key = `${e}|${w}|${c}`
  let cell = cells.get(key)
  if (!cell) {
    cell = {
      ttftMs: [],
      aggregateTps: [],
      stepMs: [],
      cpuTps: [],
      merges: 0,
      mergedPasses: 0,
      bakedPasses: 0,
      passes: 0,
    }
    cells.set(key, cell)
  }
  return cell
}

let next = 0
async function runCell(e: EngineName, w: Workload, c: number): Promise<void> {
  const cell = cellOf(e, w, c)
  const engine = engines[e]
  const before = { ...engine.counters }
  const cpu0 = process.cpuUsage()
  const started = performance.now()
  const times = await Promise.all(
    Array.from({ length: c }, async () => {
      const text = prompts[next++ % prompts.length] ?? ''
      const t = await timedGreedy(
        engine,
        profile.encodePrompt(text),
        TOKENS,
        controlsFor(e, w, text),
      )
      cell.ttftMs.push(t.first - t.t0)
      return t
    }),
  )
  const lastFirst = Math.max(...times.map((t) => t.first))
  const lastEnd = Math.max(...times.map((t) => t.last))
  const cpu = process.cpuUsage(cpu0)
  cell.cpuTps.push((c * TOKENS * 1e6) / (cpu.user + cpu.system))
  cell.aggregateTps.push((c * TOKENS * 1000) / (lastEnd - started))
  cell.stepMs.push((lastEnd - lastFirst) / (TOKENS - 1))
  cell.merges += engine.counters.merges - before.merges
  cell.mergedPasses += engine.counters.mergedPasses - before.mergedPasses
  cell.bakedPasses += engine.counters.bakedPasses - before.bakedPasses
  cell.passes += engine.counters.decodePasses - before.decodePasses
}

// Warm-up, then the timed rounds.
for (const e of ENGINE_NAMES) for (const w of WORKLOADS) await runCell(e, w, 8)
cells.clear()
for (let r = 0; r < ROUNDS; r++)
  for (const c of CONCURRENCY)
    for (const w of WORKLOADS)
      for (const e of r % 2 === 0 ? ENGINE_NAMES : [...ENGINE_NAMES].reverse()) {
        if (e === 'shared' && w === 'pinned') continue // the shared model has no mix
        for (let i = 0; i < (c === 1 ? C1_SEQUENCES : 1); i++) await runCell(e, w, c)
        markLoad(m, `${e} ${w} c=${c} round ${r + 1}`)
      }
const end = m.loads.at(-1)?.load ?? Number.NaN

const mean = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / Math.max(1, v.length)
const step = (e: EngineName, w: Workload, c: number) =>
  mean(cellOf(e, w === 'pinned' && e === 'shared' ? 'routed' : w, c).stepMs)
const agg = (e: EngineName, w: Workload, c: number) => mean(cellOf(e, w, c).aggregateTps)
const rows = WORKLOADS.flatMap((w) =>
  CONCURRENCY.map((c) => {
    const merged = cellOf('merged', w, c)
    return [
      w,
      String(c),
      fmt(step('shared', w, c), 2),
      fmt(step('factored', w, c), 2),
      fmt(step('unbaked', w, c), 2),
      fmt(step('merged', w, c), 2),
      `${(step('factored', w, c) / step('shared', w, c)).toFixed(2)}×`,
      `${(step('unbaked', w, c) / step('shared', w, c)).toFixed(2)}×`,
      `${(step('merged', w, c) / step('shared', w, c)).toFixed(2)}×`,
      fmt(agg('shared', 'routed', c), 0),
      fmt(agg('factored', w, c), 0),
      fmt(agg('merged', w, c), 0),
      `${(agg('merged', w, c) / agg('factored', w, c)).toFixed(2)}×`,
      fmt(summarize(cellOf('factored', w, c).ttftMs).p50, 1),
      fmt(summarize(merged.ttftMs).p50, 1),
      `${Math.round((100 * merged.mergedPasses) / Math.max(1, merged.passes))} %`,
      `${Math.round((100 * merged.bakedPasses) / Math.max(1, merged.passes))} %`,
      String(merged.merges),
    ]
  }),
)
const md = [
  `zoo/lm/package in the runner's generation engine, sessions as \`loadModel\` opens them (the decode graph, and the merged decode graph beside it: ${model.mergedDecode}). ${TOKENS} greedy tokens per sequence from held-out prompts, round-robin over the five domains; ${ROUNDS} interleaved rounds (concurrency 1: ${C1_SEQUENCES} sequences in a row per round). _routed_: each prompt with the mix the package's likelihood routing gives it, sent as an explicit mix (every sequence its own mix); _pinned_: every sequence with one tenant's mix {emails 0.6, speeches 0.4}. _shared_: the shared model's plain decoder graph (lm-shared-model.ts; its cells are the same in both workloads); _factored_: the twin decoding factored always (\`merge: false\`, the engine before the merged decode graph); _merged_: the twin as the runner serves it (a decode pass whose rows all apply one mix runs merged; a mix is merged when the batch has ≥ 16 steps left, and 4 mixes are kept; a mix that ran half of the last 128 merged passes is baked into a session of its own, one at a time: baked-mix-graph.ts); _merged, not baked_: the same with baking off (\`maxBaked: 0\`). Step = one batched decode pass, timed after the last sequence's first token (a merge falls in the first decode pass, so it is in the step).`,
  '',
  table(
    [
      'workload',
      'concurrency',
      'step ms shared',
      'factored',
      'merged, not baked',
      'merged',
      'factored ÷ shared step',
      'not baked ÷ shared',
      'merged ÷ shared step',
      'aggregate tok/s shared',
      'factored',
      'merged',
      'merged ÷ factored',
      'TTFT ms factored (p50)',
      'merged',
      'passes merged',
      'passes baked',
      'merges',
    ],
    rows,
  ),
  '',
  `- **Twin decode step ÷ the shared model's (goal ≤ 1.3×), merged as served:** routed ${CONCURRENCY.map((c) => `${(step('merged', 'routed', c) / step('shared', 'routed', c)).toFixed(2)}× at ${c}`).join(', ')}; pinned ${CONCURRENCY.map((c) => `${(step('merged', 'pinned', c) / step('shared', 'pinned', c)).toFixed(2)}× at ${c}`).join(', ')}. Factored always: routed ${CONCURRENCY.map((c) => `${(step('factored', 'routed', c) / step('shared', 'routed', c)).toFixed(2)}×`).join(' / ')}, pinned ${CONCURRENCY.map((c) => `${(step('factored', 'pinned', c) / step('shared', 'pinned', c)).toFixed(2)}×`).join(' / ')}.`,
  `- **Continuous batching, aggregate tokens/s at 32 ÷ at 1:** shared ${(agg('shared', 'routed', 32) / agg('shared', 'routed', 1)).toFixed(1)}×; routed: factored ${(agg('factored', 'routed', 32) / agg('factored', 'routed', 1)).toFixed(1)}×, merged ${(agg('merged', 'routed', 32) / agg('merged', 'routed', 1)).toFixed(1)}×; pinned: factored ${(agg('factored', 'pinned', 32) / agg('factored', 'pinned', 1)).toFixed(1)}×, merged ${(agg('merged', 'pinned', 32) / agg('merged', 'pinned', 1)).toFixed(1)}× (goal ≥ 4×).`,
  `- **Baked ÷ not baked, decode step:** routed ${CONCURRENCY.map((c) => `${(step('merged', 'routed', c) / step('unbaked', 'routed', c)).toFixed(2)}× at ${c}`).join(', ')}; pinned ${CONCURRENCY.map((c) => `${(step('merged', 'pinned', c) / step('unbaked', 'pinned', c)).toFixed(2)}× at ${c}`).join(', ')}.`,
  `- **Tokens per CPU-second, merged ÷ factored:** routed ${CONCURRENCY.map((c) => `${(mean(cellOf('merged', 'routed', c).cpuTps) / mean(cellOf('factored', 'routed', c).cpuTps)).toFixed(2)}× at ${c}`).join(', ')}; pinned ${CONCURRENCY.map((c) => `${(mean(cellOf('merged', 'pinned', c).cpuTps) / mean(cellOf('factored', 'pinned', c).cpuTps)).toFixed(2)}× at ${c}`).join(', ')}.`,
  `- **Machine:** ${m.nproc} cores, ${m.cpu}, ${m.memGb} GB; Node ${m.node}; onnxruntime-node ${m.ort}; provider ${model.provider}, default intra-op threads; load average ${fmt(m.loadStart, 1)} at start, ${fmt(end, 1)} at the end.`,
].join('\n')

console.log(md)
await model.close()
if (!values['no-write'])
  await writeSection(join(import.meta.dirname, 'RESULTS.md'), 'bench:merged-decode', md)
