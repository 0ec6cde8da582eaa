/**
 * What routing by the prompt's likelihood costs at the first token (issue 14): time to first token of the LM twin
 * package's held-out prompts in the runner's generation engine, the graph's router against prompt-likelihood
 * routing (the package's `router.promptLikelihood`: one more pass of T one-hot rows over the prompt before the
 * prefill), at concurrency 1 and 8, interleaved prompt by prompt (the order alternating) so both arms see the same
 * machine load. Each sequence generates one token (TTFT = submit → that token: queueing, routing, prefill). CPU
 * milliseconds per sequence (this process, all threads) are given beside the wall times: what a prefill costs,
 * whatever else runs on the machine.
 *
 *   node --import tsx bench/generate-prompt-routing.ts [--prompts 40] [--rounds 5]
 * @module
 */
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { DecoderGraph, GenerationEngine, LmProfile } from '@twinserve/gpu-runner/generate'
import { loadPackage } from '@twinserve/gpu-runner/package'
import { openSession } from '@twinserve/gpu-runner/runtime'
import { checkContract } from '@twinserve/gpu-runner/twin-contract'
import { heldOutPrompts } from './lm-workload.ts'
import { fmt, machine, summarize, table } from './perf/report.ts'

const LM = join(import.meta.dirname, '../zoo/lm')
const { values } = parseArgs({
  options: {
    prompts: { type: 'string', default: '40' },
    rounds: { type: 'string', default: '5' },
  },
})

const prompts = heldOutPrompts('file')

const m = machine()
const pkg = await loadPackage(join(LM, 'package'))
const like = pkg.manifest.router.promptLikelihood
if (!like) throw new Error('zoo/lm/package has no router.promptLikelihood')
const opened = await openSession(pkg.model, { provider: 'auto' })
const controls = checkContract(pkg.manifest, opened.session, new Map())
const profile = await LmProfile.load(join(LM, 'models'))
const T = pkg.manifest.experts.length
const graph = new DecoderGraph(opened.session, controls, T)
const options = {
  maxContext: profile.maxContext,
  maxSequences: 64,
  maxBytes: 256 * 1024 * 1024,
  prefillTokensPerStep: 512,
}
const ENGINES = {
  router: new GenerationEngine(graph, options),
  likelihood: new GenerationEngine(graph, { ...options, promptLikelihood: like }),
}
type Arm = keyof typeof ENGINES
const ids = prompts.map((p) => profile.encodePrompt(p))

const samples = new Map<string, { ttft: number[]; cpu: number[] }>()
const cell = (arm: Arm, c: number) => {
  const key = `${arm}|${c}`
  const got = samples.get(key) ?? { ttft: [], cpu: [] }
  samples.set(key, got)
  return got
}

/** Submits `batch` prompts at once on one arm; records each one's TTFT and the CPU time per sequence. */
async function run(arm: Arm, batch: number[][], c: number): Promise<void> {
  const engine = ENGINES[arm]
  const cpu0 = process.cpuUsage()
  const ttfts = await Promise.all(
    batch.map(async (promptIds) => {
      const t0 = performance.now()
      for await (const e of engine.submit({
        promptIds,
        maxTokens: 1,
        sampling: { temperature: 0, topP: 1, topK: 0 },
        stopTokenIds: [],
        controls: { useRouter: 1 },
      }))
        if (e.type === 'token') return performance.now() - t0
      throw new Error('no token')
    }),
  )
  const cpu = process.cpuUsage(cpu0)
  const got = cell(arm, c)
  got.ttft.push(...ttfts)
  got.cpu.push((cpu.user + cpu.system) / 1000 / batch.length)
}

// Warm-up: onnxruntime's first runs of each shape pay for allocations.
for (const arm of ['router', 'likelihood'] as const) await run(arm, ids.slice(0, 8), 0)
samples.clear()
const n = Number(values.prompts)
for (let i = 0; i < n; i++) {
  const p = ids[i % ids.length] ?? []
  const order: Arm[] = i % 2 ? ['likelihood', 'router'] : ['router', 'likelihood']
  for (const arm of order) await run(arm, [p], 1)
}
for (let r = 0; r < Number(values.rounds); r++) {
  const batch = Array.from({ length: 8 }, (_, j) => ids[(r * 8 + j) % ids.length] ?? [])
  const order: Arm[] = r % 2 ? ['likelihood', 'router'] : ['router', 'likelihood']
  for (const arm of order) await run(arm, batch, 8)
}

const lengths = ids.slice(0, n).map((p) => p.length)
const rows = [1, 8].map((c) => {
  const r = cell('router', c)
  const l = cell('likelihood', c)
  const [rt, lt] = [summarize(r.ttft), summarize(l.ttft)]
  const [rc, lc] = [summarize(r.cpu).mean, summarize(l.cpu).mean]
  return [
    String(c),
    String(r.ttft.length),
    fmt(rt.p50, 1),
    fmt(lt.p50, 1),
    `${(lt.p50 / rt.p50).toFixed(2)}×`,
    fmt(rt.p99, 1),
    fmt(lt.p99, 1),
    fmt(rc, 1),
    fmt(lc, 1),
    `${(lc / rc).toFixed(2)}×`,
  ]
})
console.log(
  table(
    [
      'concurrency',
      'sequences per arm',
      'TTFT ms router (p50)',
      'likelihood',
      'likelihood / router',
      'TTFT ms router (p99)',
      'likelihood',
      'CPU ms per sequence, router',
      'likelihood',
      'likelihood / router',
    ],
    rows,
  ),
)
console.log(
  `\nprompts: ${fmt(summarize(lengths).p50, 0)} tokens p50 (${Math.min(...lengths)}–${Math.max(...lengths)}), T = ${T}, τ ${like.temperature}; likelihood passes ${ENGINES.likelihood.counters.likelihoodPasses}; machine: ${m.nproc} cores, ${m.cpu}; Node ${m.node}; onnxruntime-node ${m.ort}; provider ${opened.provider}; load average ${fmt(m.loadStart, 1)} at start`,
)
