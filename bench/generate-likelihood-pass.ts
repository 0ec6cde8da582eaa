/**
 * Where the prompt-likelihood scoring pass's time goes (issue 14): the passes the engine runs to route a batch of
 * held-out prompts by each expert's likelihood (T one-hot rows per prompt, in lengthGroups' passes), on the LM twin
 * package as the runner opens it, three ways, interleaved rep by rep:
 * - *logits*: the decoder as served returns [rows, S, V] logits (onnxruntime-node copies them into fresh memory),
 *   then tokenNll takes each position's log-sum-exp in float64 in JavaScript: its time split into the run and the JS;
 * - *likelihood graph*: the derived graph (likelihood-graph.ts) returns [rows, S] target log-probabilities;
 * - *grouped*: the grouped likelihood graph the runner opens (grouped-likelihood-graph.ts): the same, with rows
 *   expert-major so that each one-hot row multiplies only its own expert's ranks.
 * Wall and this process's CPU time (all threads) per batch, the logits' bytes, and the largest relative difference
 * between the ways' prompt NLLs. Prints only (no RESULTS.md section).
 *
 *   node --import tsx bench/generate-likelihood-pass.ts [--prompts 32] [--reps 8] [--threads 0] [--package dir]
 * `--package` times another build of the LM twin (default zoo/lm/package; e.g. a scratch build with
 * `exclusive.topk_gather`); the tokenizer, prompts and models stay zoo/lm's.
 * @module
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  DecoderGraph,
  decoderAsServed,
  groupedLikelihoodGraph,
  LmProfile,
  lengthGroups,
  likelihoodGraph,
  scoringFeeds,
  scoringRow,
  tokenNll,
  withoutNewKv,
} from '@twinserve/gpu-runner/generate'
import { loadPackage } from '@twinserve/gpu-runner/package'
import { openSession } from '@twinserve/gpu-runner/runtime'
import { checkContract } from '@twinserve/gpu-runner/twin-contract'
import { gatherOf } from './lm-package.ts'
import { heldOutPrompts } from './lm-workload.ts'

const { values } = parseArgs({
  options: {
    prompts: { type: 'string', default: '32' },
    reps: { type: 'string', default: '8' },
    threads: { type: 'string', default: '0' },
    package: { type: 'string' },
  },
})
const LM = join(import.meta.dirname, '../zoo/lm')
const REPS = Number(values.reps)
const threads = Number(values.threads)
const opts = { provider: 'cpu' as const, ...(threads > 0 ? { threads } : {}) }

const PACKAGE = values.package ?? join(LM, 'package')
const pkg = await loadPackage(PACKAGE)
const served = decoderAsServed(pkg.model)
const derived = likelihoodGraph(served)
if (!('bytes' in derived)) throw new Error(`no likelihood graph: ${derived.unavailable}`)
const main = await openSession(served, opts)
const scorer = await openSession(derived.bytes, opts)
const controls = checkContract(pkg.manifest, withoutNewKv(main.session), new Map())
const T = pkg.manifest.experts.length
const graph = new DecoderGraph(main.session, controls, T, scorer.session)
const grouping = groupedLikelihoodGraph(derived.bytes, T)
if (!('bytes' in grouping)) throw new Error(`no grouped likelihood graph: ${grouping.unavailable}`)
const groupedGraph = new DecoderGraph(
  main.session,
  controls,
  T,
  (await openSession(grouping.bytes, opts)).session,
  true,
)
const profile = await LmProfile.load(join(LM, 'models'))
// The held-out prompts in file order (the first ones are emails), as the recorded runs of this bench took them;
// bench:generate now takes them round-robin over the domains.
const batch = heldOutPrompts('file')
  .slice(0, Number(values.prompts))
  .map((p) => profile.encodePrompt(p))

/** One pass's feeds: T one-hot rows per prompt, right-padded, as the engine builds them. */
const feedsOf = (prompts: readonly number[][]) => scoringFeeds(graph, prompts)

const cpuMs = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}
const sum = {
  run: 0,
  runCpu: 0,
  js: 0,
  jsCpu: 0,
  score: 0,
  scoreCpu: 0,
  grouped: 0,
  groupedCpu: 0,
  logitsBytes: 0,
}
let worst = 0
let worstGrouped = 0
const groups = lengthGroups(batch.map((p) => p.length)).map((g) => g.map((i) => batch[i] ?? []))
for (let rep = 0; rep <= REPS; rep++) {
  // Rep 0 warms the sessions up.
  for (const [g, prompts] of groups.entries()) {
    const f = feedsOf(prompts)
    const S = f.seq
    const timed = async <R>(fn: () => Promise<R> | R): Promise<[R, number, number]> => {
      const t0 = performance.now()
      const c0 = cpuMs()
      const r = await fn()
      return [r, performance.now() - t0, cpuMs() - c0]
    }
    const logitsWay = async () => {
      const [out, run, runCpu] = await timed(() => graph.run({ ...f, keys: false }))
      const [nll, js, jsCpu] = await timed(() =>
        prompts.flatMap((p, k) =>
          Array.from({ length: T }, (_, e) => {
            let n = 0
            for (let s = 0; s + 1 < p.length; s++) {
              const at = ((k * T + e) * S + s) * out.vocab
              n += tokenNll(out.logits.subarray(at, at + out.vocab), p[s + 1] as number)
            }
            return n
          }),
        ),
      )
      if (rep > 0) {
        Object.assign(sum, {
          run: sum.run + run,
          runCpu: sum.runCpu + runCpu,
          js: sum.js + js,
          jsCpu: sum.jsCpu + jsCpu,
          logitsBytes: sum.logitsBytes + out.logits.byteLength,
        })
      }
      return nll
    }
    const graphWay = async () => {
      const [out, score, scoreCpu] = await timed(() => graph.score(f))
      if (rep > 0)
        Object.assign(sum, { score: sum.score + score, scoreCpu: sum.scoreCpu + scoreCpu })
      return prompts.flatMap((p, k) =>
        Array.from({ length: T }, (_, e) => {
          let n = 0
          for (let s = 0; s + 1 < p.length; s++) n -= out.logprobs[(k * T + e) * S + s] as number
          return n
        }),
      )
    }
    const groupedWay = async () => {
      const fg = scoringFeeds(groupedGraph, prompts, false, true)
      const [out, t, c] = await timed(() => groupedGraph.score(fg))
      if (rep > 0) Object.assign(sum, { grouped: sum.grouped + t, groupedCpu: sum.groupedCpu + c })
      return prompts.flatMap((p, k) =>
        Array.from({ length: T }, (_, e) => {
          const row = scoringRow(k, e, prompts.length, T, true)
          let n = 0
          for (let s = 0; s + 1 < p.length; s++) n -= out.logprobs[row * S + s] as number
          return n
        }),
      )
    }
    // Three ways in a rotating order, so that none always runs first.
    const ways = [logitsWay, graphWay, groupedWay]
    const got: number[][] = new Array(3)
    for (let i = 0; i < 3; i++) {
      const w = (rep + g + i) % 3
      got[w] = await (ways[w] as () => Promise<number[]>)()
    }
    const [js = [], inGraph = [], grouped = []] = got
    for (const [i, x] of js.entries()) {
      worst = Math.max(worst, Math.abs((inGraph[i] as number) - x) / Math.abs(x))
      const y = inGraph[i] as number
      worstGrouped = Math.max(worstGrouped, Math.abs((grouped[i] as number) - y) / Math.abs(y))
    }
  }
}

const per = (x: number) => (x / REPS).toFixed(1)
const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
console.log(
  [
    `${PACKAGE}${gatherOf(pkg.manifest.recipe) ? ` (topk_gather ${gatherOf(pkg.manifest.recipe)})` : ''}: ${batch.length} held-out prompts (lengths ${Math.min(...batch.map((p) => p.length))}–${Math.max(...batch.map((p) => p.length))}) × ${T} one-hot rows, ${groups.length} passes (lengthGroups; ${grouping.grouped} corrections grouped); provider cpu, ${threads > 0 ? `${threads}` : 'default'} intra-op threads; mean of ${REPS} interleaved reps, per batch of prompts:`,
    `- logits: run ${per(sum.run)} ms wall (${per(sum.runCpu)} ms CPU; ${(sum.logitsBytes / REPS / 1e6).toFixed(1)} MB of logits) + JavaScript log-softmax ${per(sum.js)} ms wall (${per(sum.jsCpu)} ms CPU) = ${per(sum.run + sum.js)} ms wall, ${per(sum.runCpu + sum.jsCpu)} ms CPU`,
    `- likelihood graph: ${per(sum.score)} ms wall, ${per(sum.scoreCpu)} ms CPU (${(sum.scoreCpu / (sum.runCpu + sum.jsCpu)).toFixed(2)}× the logits way's CPU, ${(sum.score / (sum.run + sum.js)).toFixed(2)}× its wall)`,
    `- grouped likelihood graph: ${per(sum.grouped)} ms wall, ${per(sum.groupedCpu)} ms CPU (${(sum.groupedCpu / sum.scoreCpu).toFixed(2)}× the likelihood graph's CPU, ${(sum.grouped / sum.score).toFixed(2)}× its wall; ${(sum.groupedCpu / (sum.runCpu + sum.jsCpu)).toFixed(2)}× the logits way's CPU)`,
    `- prompt NLL, likelihood graph vs logits + float64 log-softmax: largest relative difference ${worst.toExponential(1)}; grouped vs likelihood graph: ${worstGrouped.toExponential(1)}`,
    `- load average ${load} at the end (other jobs share the machine: CPU time is the steadier measure)`,
  ].join('\n'),
)
