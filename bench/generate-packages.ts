/**
 * Two builds of the LM twin side by side (issue 14): e.g. the committed zoo/lm/package against a scratch build with
 * `exclusive.topk_gather`, each opened as the runner opens it (decoderAsServed, its likelihood graph), in one
 * process, interleaved rep by rep and round by round (order alternating) so both see the same load:
 * - the prompt-likelihood scoring pass (T one-hot rows per prompt, lengthGroups' passes, on the likelihood graph)
 *   for `--prompts` held-out prompts: wall and this process's CPU ms per batch;
 * - bench:generate's twin arm (routed by the prompt's likelihood at prefill, 48 greedy tokens per sequence) at
 *   concurrency 1 (4 sequences in a row), 8 and 32: decode step ms, TTFT p50, aggregate tokens/s and tokens per
 *   CPU-second, and their concurrency 32 ÷ 1 scaling.
 * Prints only (no RESULTS.md section). Each build's scoring runs on its grouped likelihood graph when it has one (as
 * load-model.ts opens it); a build with `router.prompt_likelihood.router_above` routes as the runner does (the
 * router's prefill kept when sure), as does one with `bag` (a prompt the classifier is sure of prefilled once,
 * unscored), and the last lines count those prefills.
 *
 *   node --import tsx bench/generate-packages.ts --b /tmp/x/pkg [--a zoo/lm/package] [--rounds 3] [--reps 6]
 *     [--interleave]   # held-out prompts round-robin over the domains (default: file order, emails first)
 * @module
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  DecoderGraph,
  decoderAsServed,
  GenerationEngine,
  groupedLikelihoodGraph,
  LmProfile,
  lengthGroups,
  likelihoodGraph,
  scoringFeeds,
  withoutNewKv,
} from '@twinserve/gpu-runner/generate'
import { loadPackage } from '@twinserve/gpu-runner/package'
import { openSession } from '@twinserve/gpu-runner/runtime'
import { checkContract } from '@twinserve/gpu-runner/twin-contract'
import { gatherOf } from './lm-package.ts'
import { heldOutPrompts, timedGreedy } from './lm-workload.ts'
import { summarize } from './perf/report.ts'

const { values } = parseArgs({
  options: {
    a: { type: 'string' },
    b: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    reps: { type: 'string', default: '6' },
    prompts: { type: 'string', default: '32' },
    interleave: { type: 'boolean' },
  },
})
const LM = join(import.meta.dirname, '../zoo/lm')
if (!values.b)
  throw new Error(
    '--b <package dir> is required (the build compared with --a, default zoo/lm/package)',
  )
const DIRS = [values.a ?? join(LM, 'package'), values.b] as const
const ROUNDS = Number(values.rounds)
const REPS = Number(values.reps)
const TOKENS = 48
const CONCURRENCY = [1, 8, 32] as const

const profile = await LmProfile.load(join(LM, 'models'))
// `--interleave`: round-robin over the domains (what routing sees in a mixed load); by default the file's order,
// whose first 200 prompts are all emails.
const prompts = heldOutPrompts(values.interleave ? 'round-robin' : 'file')

/** A package as load-model.ts opens it for likelihood routing: the served graph and its likelihood graph. */
async function open(dir: string) {
  const pkg = await loadPackage(dir)
  const served = decoderAsServed(pkg.model)
  const derived = likelihoodGraph(served)
  if (!('bytes' in derived)) throw new Error(`${dir}: no likelihood graph: ${derived.unavailable}`)
  const main = await openSession(served, { provider: 'cpu' })
  const scorer = await openSession(derived.bytes, { provider: 'cpu' })
  const controls = checkContract(pkg.manifest, withoutNewKv(main.session), new Map())
  const T = pkg.manifest.experts.length
  const like = pkg.manifest.router.promptLikelihood
  // The grouped likelihood graph, as load-model.ts opens it when the scoring pass has no router row.
  const grouping =
    (like?.routerWeight ?? 0) !== 0
      ? { unavailable: 'router_weight ≠ 0' }
      : groupedLikelihoodGraph(derived.bytes, T)
  const graph =
    'bytes' in grouping
      ? new DecoderGraph(
          main.session,
          controls,
          T,
          (await openSession(grouping.bytes, { provider: 'cpu' })).session,
          true,
        )
      : new DecoderGraph(main.session, controls, T, scorer.session)
  const engine = new GenerationEngine(graph, {
    maxContext: profile.maxContext,
    maxSequences: 64,
    maxBytes: 256 * 1024 * 1024,
    prefillTokensPerStep: 512,
    detokenizer: profile,
    ...(like ? { promptLikelihood: like } : {}),
  })
  const gather = gatherOf(pkg.manifest.recipe)
  return {
    dir,
    T,
    graph,
    engine,
    label: `${dir}${gather ? ` (topk_gather ${gather})` : ' (dense)'}${like?.routerAbove !== undefined ? ` (router_above ${like.routerAbove})` : ''}${like?.bag ? ` (bag skip_above ${like.bag.skipAbove})` : ''}${'bytes' in grouping ? ', grouped scoring' : ''}`,
  }
}
const first = await open(DIRS[0])
const packages = [first, await open(DIRS[1])]
const T = first.T

const cpuMs = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/** One scoring pass's feeds: T one-hot rows per prompt, right-padded, as the engine builds them. */
const feedsOf = (batch: readonly number[][]) => scoringFeeds(first.graph, batch)

// 1. The scoring pass.
const scoring = prompts.slice(0, Number(values.prompts)).map((p) => profile.encodePrompt(p))
const groups = lengthGroups(scoring.map((p) => p.length)).map((g) => g.map((i) => scoring[i] ?? []))
const feeds = groups.map(feedsOf)
const pass = packages.map(() => ({ wall: 0, cpu: 0 }))
for (let rep = 0; rep <= REPS; rep++)
  for (const k of rep % 2 === 0 ? [0, 1] : [1, 0]) {
    const p = packages[k] as (typeof packages)[number]
    const t0 = performance.now()
    const c0 = cpuMs()
    for (const f of feeds) await p.graph.score(f)
    // Rep 0 warms both up.
    if (rep > 0) {
      const acc = pass[k] as { wall: number; cpu: number }
      acc.wall += performance.now() - t0
      acc.cpu += cpuMs() - c0
    }
  }

// 2. Generation, bench:generate's twin arm.
interface Cell {
  ttft: number[]
  step: number[]
  agg: number[]
  cpuTps: number[]
}
const cells = new Map<string, Cell>()
const cellOf = (k: number, c: number) => {
  const key = `${k}|${c}`
  const cell = cells.get(key) ?? { ttft: [], step: [], agg: [], cpuTps: [] }
  cells.set(key, cell)
  return cell
}
let next = 0
async function runCell(k: number, c: number, record: boolean) {
  const { engine } = packages[k] as (typeof packages)[number]
  const cell = cellOf(k, c)
  const cpu0 = process.cpuUsage()
  const started = performance.now()
  const base = next
  next += c
  const times = await Promise.all(
    Array.from({ length: c }, async (_, i) => {
      const ids = profile.encodePrompt(prompts[(base + i) % prompts.length] ?? '')
      const { t0, first, last } = await timedGreedy(engine, ids, TOKENS, { useRouter: 1 })
      if (record) cell.ttft.push(first - t0)
      return { first, last }
    }),
  )
  if (!record) return
  const lastFirst = Math.max(...times.map((t) => t.first))
  const lastEnd = Math.max(...times.map((t) => t.last))
  const cpu = process.cpuUsage(cpu0)
  cell.cpuTps.push((c * TOKENS * 1e6) / (cpu.user + cpu.system))
  cell.agg.push((c * TOKENS * 1000) / (lastEnd - started))
  cell.step.push((lastEnd - lastFirst) / (TOKENS - 1))
}
for (const k of [0, 1]) await runCell(k, 8, false)
for (let r = 0; r < ROUNDS; r++)
  for (const c of CONCURRENCY) {
    // Both builds take the same prompts in a cell.
    const from = next
    for (const k of (r + c) % 2 === 0 ? [0, 1] : [1, 0]) {
      next = from
      for (let i = 0; i < (c === 1 ? 4 : 1); i++) await runCell(k, c, true)
    }
  }

const mean = (xs: number[]) => summarize(xs).mean
const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
const lines = [
  `Prompts: ${values.interleave ? 'round-robin over the domains' : 'file order (the first 200 are emails)'}. Scoring pass (${scoring.length} held-out prompts × ${T} one-hot rows, ${feeds.length} passes, likelihood graph), mean of ${REPS} interleaved reps per batch; generation: twin arm, ${TOKENS} greedy tokens, ${ROUNDS} interleaved rounds (concurrency 1: 4 sequences in a row).`,
  '',
  '| build | scoring ms wall | scoring ms CPU | step ms c1 | step ms c32 | TTFT p50 ms c1 | c32 | agg tok/s c1 | c8 | c32 | c32 ÷ c1 | tok per CPU-s c1 | c8 | c32 | c32 ÷ c1 |',
  '| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |',
  ...packages.map((p, k) => {
    const s = pass[k] as { wall: number; cpu: number }
    const at = (c: number) => cellOf(k, c)
    return `| ${p.label} | ${(s.wall / REPS).toFixed(1)} | ${(s.cpu / REPS).toFixed(1)} | ${mean(at(1).step).toFixed(2)} | ${mean(at(32).step).toFixed(2)} | ${summarize(at(1).ttft).p50.toFixed(1)} | ${summarize(at(32).ttft).p50.toFixed(1)} | ${CONCURRENCY.map((c) => mean(at(c).agg).toFixed(0)).join(' | ')} | ${(mean(at(32).agg) / mean(at(1).agg)).toFixed(2)}× | ${CONCURRENCY.map((c) => mean(at(c).cpuTps).toFixed(0)).join(' | ')} | ${(mean(at(32).cpuTps) / mean(at(1).cpuTps)).toFixed(2)}× |`
  }),
  '',
  `b ÷ a: scoring CPU ${((pass[1]?.cpu ?? 0) / (pass[0]?.cpu ?? 1)).toFixed(2)}×; step ${CONCURRENCY.map((c) => `${(mean(cellOf(1, c).step) / mean(cellOf(0, c).step)).toFixed(2)}× at c${c}`).join(', ')}; tokens per CPU-second ${CONCURRENCY.map((c) => `${(mean(cellOf(1, c).cpuTps) / mean(cellOf(0, c).cpuTps)).toFixed(2)}× at c${c}`).join(', ')}.`,
  `Prefills kept from the router (router_above, no scoring pass): ${packages.map((p) => `${p.engine.counters.routerKept} of ${p.engine.counters.prefills}`).join(' / ')}; routed by the bag-of-ids classifier (bag, no scoring pass): ${packages.map((p) => `${p.engine.counters.bagSkipped} of ${p.engine.counters.prefills}`).join(' / ')}; scoring passes ${packages.map((p) => p.engine.counters.likelihoodPasses).join(' / ')}.`,
  `Load average ${load} at the end (2 cores shared with other jobs: CPU time is the steadier measure).`,
]
console.log(lines.join('\n'))
