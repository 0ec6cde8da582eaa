/**
 * `npm run bench:load-memory` (issue #19): how much memory a hot load takes, against what the runner's load check
 * estimates (gpu-runner/src/server/package-location.ts). Each zoo package is loaded into a process that already
 * holds it once (as a runner does when a new version arrives: onnxruntime and the session threads' code are
 * already up), and the resident set's growth is measured after a GC and a pause. A package routed by its prompt's
 * likelihood is measured twice: as a hot load opens it (no likelihood graph, no merged decode graph: a runner opens
 * those sessions only for the models it generates with, which are never hot-loaded) and as a generating runner opens
 * it at start.
 *
 *   npm run bench:load-memory                 # writes the bench:load-memory section of bench/RESULTS.md
 *   npm run bench:load-memory -- --no-write   # prints it only
 * @module
 */
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { loadModel } from '@twinserve/gpu-runner/model'
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
const body = `## Memory of a hot load (\`npm run bench:load-memory\`, issue #19)

A package loaded into a process that already holds it once (a runner taking a new version): resident set growth
after a GC, against the estimate the load check uses (5 × package bytes, the twin graph counted once more where its likelihood graph opens and once more for a KV-cache decoder, + 8 MiB per session, + a generating decoder's corrected matrices in float32 4 × (T + 1) + 2 × 4 times for its merged decode graph, and one more session and 5 × those matrices for the one mix it may bake into a session of its own). A
runner opens a likelihood-routed package's likelihood graph, and a decoder's merged decode graph, only for a model it generates with (at start; such models
are not hot-loaded): the "generating" row is that load (no mix merged or baked yet: the kept mixes' matrices and the baked session are in the estimate, not in the growth). ${m.cpu}, ${m.nproc}
cores, ${m.memGb} GiB, Node ${m.node}, onnxruntime ${m.ort}; CPU sessions, one thread each. Other jobs shared the
cores (load average ${fmt(m.loadStart, 2)}); memory is what is measured, not time.

${table(['package', 'sessions', 'on disk, MiB', 'RSS growth, MiB', 'estimate, MiB', 'estimate / growth'], rows)}
`
if (values['no-write']) process.stdout.write(body)
else await writeSection(join(ROOT, 'bench/RESULTS.md'), 'bench:load-memory', body)
process.stdout.write(body)
