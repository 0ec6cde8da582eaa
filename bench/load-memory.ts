/**
 * `npm run bench:load-memory` (issue #19): how much memory a hot load takes, against what the runner's load check
 * estimates (gpu-runner/src/server/package-location.ts). Each zoo package is loaded into a process that already
 * holds it once (as a runner does when a new version arrives: onnxruntime and the session threads' code are
 * already up), and the resident set's growth is measured after a GC and a pause. A package routed by its prompt's
 * likelihood is measured twice: as a hot load opens it (no likelihood graph, no merged decode graph: a runner opens
 * those sessions only for the models it generates with, which are never hot-loaded) and as a generating runner opens
 * it at start. Last, a generating zoo/lm bakes BAKED one-hot mixes into sessions of their own (generate/baked-mix-graph.ts,
 * as the engine does for a hot mix, in threads as the runner opens them): the growth and open time per baked
 * session, against the estimate's share for one.
 *
 *   npm run bench:load-memory                 # writes the bench:load-memory section of bench/RESULTS.md
 *   npm run bench:load-memory -- --no-write   # prints it only
 * @module
 */
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { MERGE_MIX } from '@twinserve/gpu-runner/generate'
import { loadModel } from '@twinserve/gpu-runner/model'
import { ort } from '@twinserve/gpu-runner/runtime'
import { estimateLoadedBytes, packageBytes } from '@twinserve/gpu-runner/server'
import { fmt, machine, table, writeSection } from './perf/report.ts'

const ROOT = join(import.meta.dirname, '..')
/**
 * Each package, and whether it is opened for generation: its likelihood graph's session (only zoo/lm routes by
 * likelihood) and its merged decode graph's two sessions (only zoo/lm is a KV-cache decoder).
 */
const PACKAGES = [
  { rel: 'zoo/fashion/package', likelihood: false },
  { rel: 'zoo/text/package', likelihood: false },
  { rel: 'zoo/lm/package', likelihood: false },
  { rel: 'zoo/lm/package', likelihood: true },
]
const MIB = 2 ** 20
const opts = { provider: 'cpu' as const, threads: 1, mergeCache: { maxEntries: 1, maxBytes: MIB } }

async function settledRss(): Promise<number> {
  globalThis.gc?.()
  await new Promise((r) => setTimeout(r, 300))
  return process.memoryUsage().rss
}

const { values } = parseArgs({ options: { 'no-write': { type: 'boolean' } } })
if (!globalThis.gc) throw new Error('run with node --expose-gc (npm run bench:load-memory does)')
const m = machine()
const rows: string[][] = []
for (const { rel, likelihood } of PACKAGES) {
  const dir = join(ROOT, rel)
  const load = () =>
    loadModel(dir, {
      ...opts,
      likelihoodSession: () => likelihood,
      mergedSessions: () => likelihood,
    })
  const first = await load()
  const before = await settledRss()
  const second = await load()
  const grew = (await settledRss()) - before
  const estimate = await estimateLoadedBytes(dir, first.manifest, {
    likelihoodSession: likelihood,
    mergedSessions: likelihood,
  })
  rows.push([
    likelihood ? `${rel}, generating (its likelihood and merged decode graphs too)` : rel,
    // The twin graph, each variant, and a generating model's likelihood graph and merged decode graph (two).
    String(
      1 +
        first.manifest.variants.length +
        (second.likelihoodSessionOpen ? 1 : 0) +
        (second.mergedSessionBytes > 0 ? 2 : 0),
    ),
    fmt((await packageBytes(dir, first.manifest)) / MIB),
    fmt(grew / MIB),
    fmt(estimate / MIB),
    `${(estimate / grew).toFixed(2)}×`,
  ])
  await Promise.all([first.close(), second.close()])
}
const BAKED = 3

/** A generating zoo/lm's baked sessions: RSS growth and open time per session, and the estimate's share for one. */
async function bakedRow(): Promise<string[]> {
  const dir = join(ROOT, 'zoo/lm/package')
  const model = await loadModel(dir, {
    ...opts,
    likelihoodSession: () => true,
    mergedSessions: () => true,
  })
  const merged = model.twinGraph.merged
  if (!merged?.bake)
    throw new Error(`zoo/lm has no merged decode graph to bake: ${model.mergedDecode}`)
  const T = model.manifest.experts.length
  const names = merged.matrices.map((m) => m.name)
  // Each mix's merged matrices first, so that the growth measured is the baked sessions' alone.
  const mixes = await Promise.all(
    Array.from({ length: BAKED }, async (_, i) => {
      const mix = Float32Array.from({ length: T }, (_, t) => (t === i % T ? 1 : 0))
      const out = await merged.merge.run(
        { [MERGE_MIX]: new ort.Tensor('float32', mix, [1, T]) },
        names,
      )
      return {
        mix,
        values: Object.fromEntries(names.map((n) => [n, out[n]?.data as Float32Array])),
      }
    }),
  )
  const before = await settledRss()
  const openMs: number[] = []
  const baked = []
  for (const { mix, values } of mixes) {
    const t0 = performance.now()
    baked.push(await merged.bake(mix, values))
    openMs.push(performance.now() - t0)
  }
  const grew = ((await settledRss()) - before) / BAKED
  const estimate =
    (await estimateLoadedBytes(dir, model.manifest)) -
    (await estimateLoadedBytes(dir, model.manifest, { bakedMixes: 0 }))
  await Promise.all(baked.map((b) => b.release()))
  await model.close()
  const median = [...openMs].sort((a, b) => a - b)[Math.floor(BAKED / 2)] ?? Number.NaN
  return [
    `zoo/lm/package, one mix baked (per session, ${BAKED} opened; median ${fmt(median, 0)} ms to open)`,
    '1',
    '-',
    fmt(grew / MIB),
    fmt(estimate / MIB),
    `${(estimate / grew).toFixed(2)}×`,
  ]
}
rows.push(await bakedRow())

const body = `## Memory of a hot load (\`npm run bench:load-memory\`, issue #19)

A package loaded into a process that already holds it once (a runner taking a new version): resident set growth
after a GC, against the estimate the load check uses (5 × package bytes, the twin graph counted once more where its likelihood graph opens and once more for a KV-cache decoder, + 8 MiB per session, + a generating decoder's corrected matrices in float32 4 × (T + 1) + 2 × 4 times for its merged decode graph, and one more session and 5 × those matrices for the one mix it may bake into a session of its own). A
runner opens a likelihood-routed package's likelihood graph, and a decoder's merged decode graph, only for a model it generates with (at start; such models
are not hot-loaded): the "generating" row is that load (no mix merged or baked yet: the kept mixes' matrices and the baked session are in the estimate, not in the growth). The last row is one baked session's share: ${BAKED} one-hot mixes baked into sessions of their own in that load, the growth divided by ${BAKED}, against what the estimate adds for one. ${m.cpu}, ${m.nproc}
cores, ${m.memGb} GiB, Node ${m.node}, onnxruntime ${m.ort}; CPU sessions, one thread each. Other jobs shared the
cores (load average ${fmt(m.loadStart, 2)}); memory is what is measured, not time.

${table(['package', 'sessions', 'on disk, MiB', 'RSS growth, MiB', 'estimate, MiB', 'estimate / growth'], rows)}
`
if (values['no-write']) process.stdout.write(body)
else await writeSection(join(ROOT, 'bench/RESULTS.md'), 'bench:load-memory', body)
process.stdout.write(body)
