/**
 * What a shared basis (recipe `exclusive.shared_basis`, issue #18) costs to serve on the BERT-base shape, against
 * per-expert factors and the plain shared model: latency only. Each configuration is the twin-graph rewrite of
 * the BERT-shaped encoder (bert-encoder.ts) with random factors of the given ranks on every matrix (no SVD: the
 * values do not change the cost; the builder's quality on these random experts is not the question), timed
 * interleaved with the plain model in one process (median of rounds × runs, batch 1 and 8 at seq 128, every row
 * an explicit mix of 2 experts). Latency depends on the ranks a row computes, so the question is how R must grow
 * with T: the basis of rank R serves T experts for R·(d_in + d_out) per token plus T·R² per example (the cores,
 * mixed once per example), where per-expert rank r costs T·r·(d_in + d_out) per token.
 *
 *   node --import tsx bench/perf/shared-basis-latency.ts [--runs 15] [--rounds 3] [--no-write]
 *
 * Uses the builder's internals (rewrite, batch tracking) by path: a benchmark of the graph form, not of a build.
 * @module
 */
import { readFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import {
  analyseSites,
  type MatrixFactors,
  markdownTable,
  modelInputs,
  readOnnxBytes,
  rewriteTwinGraph,
  routerEmitter,
  trackRows,
} from '@twinserve/gpu-runner/build'
import { onnx } from '@twinserve/gpu-runner/onnx'
import { ort } from '@twinserve/gpu-runner/runtime'
import { encodeControls } from '@twinserve/gpu-runner/twin-contract'
import { replaceSection } from '../quality/results-file.ts'
import { BERT, baseParams, bertModel } from './bert-encoder.ts'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '15' },
    rounds: { type: 'string', default: '3' },
    results: { type: 'string', default: 'bench/RESULTS.md' },
    'no-write': { type: 'boolean', default: false },
  },
})
const started = performance.now()
const log = (line: string) =>
  process.stderr.write(`${line} (${((performance.now() - started) / 1000).toFixed(0)} s)\n`)

interface Config {
  label: string
  T: number
  /** Per-expert rank r (stacked T·r), or the basis rank R. */
  kind: 'per-expert' | 'basis'
  rank: number
}
const CONFIGS: Config[] = [
  { label: 'per-expert r16, T = 8 (R = 128, dense)', T: 8, kind: 'per-expert', rank: 16 },
  { label: 'shared basis R 64, T = 8', T: 8, kind: 'basis', rank: 64 },
  { label: 'shared basis R 128, T = 8', T: 8, kind: 'basis', rank: 128 },
  { label: 'shared basis R 128, T = 32', T: 32, kind: 'basis', rank: 128 },
  { label: 'shared basis R 256, T = 32', T: 32, kind: 'basis', rank: 256 },
]

let seed = 12345
/** Uniform in [-a, a) (xorshift32). */
function noise(n: number, a: number): Float32Array {
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    out[i] = ((seed >>> 0) / 2 ** 32 - 0.5) * 2 * a
  }
  return out
}

function factorsFor(name: string, rows: number, cols: number, c: Config): MatrixFactors {
  if (c.kind === 'per-expert') {
    const R = c.T * c.rank
    return {
      kind: 'matrix',
      name,
      rows,
      cols,
      u: noise(rows * R, 0.05),
      sigma: new Float32Array(R).fill(0.01),
      vt: noise(R * cols, 0.05),
      expertOfRank: Int32Array.from({ length: R }, (_, j) => Math.floor(j / c.rank)),
    }
  }
  const ri = Math.min(c.rank, rows)
  const ro = Math.min(c.rank, cols)
  // The per-expert form is not stored when a basis is (a rank-1 placeholder keeps the shape checks).
  return {
    kind: 'matrix',
    name,
    rows,
    cols,
    u: new Float32Array(rows),
    sigma: new Float32Array(1).fill(1),
    vt: new Float32Array(cols),
    expertOfRank: new Int32Array(1),
    basis: {
      rankIn: ri,
      rankOut: ro,
      u: noise(rows * ri, 0.05),
      v: noise(ro * cols, 0.05),
      cores: noise(c.T * ri * ro, 0.01),
    },
  }
}

const base = readOnnxBytes(bertModel(baseParams(1)), 'bert')
const sites = analyseSites(base.graph, base.initializers)
const inputs = modelInputs(base.graph)
const probe = {
  input_ids: new ort.Tensor(
    'int64',
    BigInt64Array.from({ length: 2 * BERT.seq }, (_, i) => BigInt((i * 37) % BERT.vocab)),
    [2, BERT.seq],
  ),
}
const { layouts } = await trackRows(base.model, inputs, probe)
log('batch tracked')
const FEATURE = 'embeddings.output'
const matrixSites = [...sites].filter(([, s]) => s.kind === 'matrix')

function twinGraph(c: Config): Uint8Array {
  const matrices = matrixSites.map(([name, s]) =>
    factorsFor(name, s.shape[0] ?? 0, s.shape[1] ?? 0, c),
  )
  const d = BERT.d
  const twin = rewriteTwinGraph({
    model: base.model,
    sites,
    matrices,
    vectors: [],
    experts: c.T,
    layouts,
    feature: { tensor: FEATURE, layout: layouts.get(FEATURE) },
    batchInput: 'input_ids',
    router: routerEmitter({
      kind: 'prototype',
      standardizer: { mean: new Float32Array(d), std: new Float32Array(d).fill(1) },
      prototypes: noise(d * c.T, 1),
      temperature: 1,
    }),
    controls: 'inputs',
    batchDim: 'batch',
  })
  return onnx.ModelProto.encode(twin).finish()
}

const sessionOptions: ort.InferenceSession.SessionOptions = {
  graphOptimizationLevel: 'all',
  executionProviders: ['cpu'],
  extra: { session: { intra_op: { allow_spinning: '0' } } },
}
const plainBytes = onnx.ModelProto.encode(base.model).finish()
const sessions = [await ort.InferenceSession.create(plainBytes, sessionOptions)]
for (const c of CONFIGS) {
  sessions.push(await ort.InferenceSession.create(twinGraph(c), sessionOptions))
  log(`built ${c.label}`)
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
const results: Record<number, number[]> = {}
for (const batch of [1, 8]) {
  const ids = new ort.Tensor(
    'int64',
    BigInt64Array.from({ length: batch * BERT.seq }, (_, i) => BigInt((i * 7919) % BERT.vocab)),
    [batch, BERT.seq],
  )
  const feeds = sessions.map((_, i) => {
    if (i === 0) return { input_ids: ids }
    const T = (CONFIGS[i - 1] as Config).T
    const rows = Array.from({ length: batch }, (_, b) => ({
      mixWeights: Array.from({ length: T }, (_, t) =>
        t === b % T ? 0.7 : t === (b + 1) % T ? 0.3 : 0,
      ),
    }))
    return { input_ids: ids, ...encodeControls(rows, T) }
  })
  const times = sessions.map(() => [] as number[])
  for (const [i, s] of sessions.entries()) for (let w = 0; w < 2; w++) await s.run(feeds[i] ?? {})
  for (let round = 0; round < Number(values.rounds); round++)
    for (let k = 0; k < Number(values.runs); k++)
      for (const [i, s] of sessions.entries()) {
        const t0 = performance.now()
        await s.run(feeds[i] ?? {})
        times[i]?.push(performance.now() - t0)
      }
  results[batch] = times.map(median)
  log(`timed batch ${batch}`)
}
for (const s of sessions) await s.release()

const ms = (b: number, i: number) => results[b]?.[i] ?? 0
const perToken = (c: Config) => {
  // Multiply-adds per token of every matrix's correction (+ the cores' per-example mix spread over seq).
  return matrixSites.reduce((a, [, s]) => {
    const [rows, cols] = s.shape as [number, number]
    if (c.kind === 'per-expert') return a + c.T * c.rank * (rows + cols)
    const ri = Math.min(c.rank, rows)
    const ro = Math.min(c.rank, cols)
    return a + ri * rows + ro * cols + ri * ro + (c.T * ri * ro) / BERT.seq
  }, 0)
}
const plainMacs = matrixSites.reduce((a, [, s]) => a + (s.shape[0] ?? 0) * (s.shape[1] ?? 0), 0)
const table = markdownTable(
  [
    'configuration',
    'extra MACs / token vs plain',
    'batch 1 ms',
    'batch 1 vs plain',
    'batch 8 ms',
    'batch 8 vs plain',
  ],
  [
    ['plain shared model', '—', ms(1, 0).toFixed(1), '1.00×', ms(8, 0).toFixed(1), '1.00×'],
    ...CONFIGS.map((c, i) => [
      c.label,
      `+${((100 * perToken(c)) / plainMacs).toFixed(0)}%`,
      ms(1, i + 1).toFixed(1),
      `${(ms(1, i + 1) / ms(1, 0)).toFixed(2)}×`,
      ms(8, i + 1).toFixed(1),
      `${(ms(8, i + 1) / ms(8, 0)).toFixed(2)}×`,
    ]),
  ],
)
const cpu =
  readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? cpus()[0]?.model
const section = [
  '### Shared basis on the BERT-base shape: serving cost against T (issue #18)',
  '',
  `- **Command:** \`node --import tsx bench/perf/shared-basis-latency.ts\` (this section is regenerated between its markers; ${((performance.now() - started) / 1000).toFixed(0)} s wall). ` +
    `**Date:** ${new Date().toISOString().slice(0, 10)}. **Machine:** \`nproc\` = ${cpus().length}, CPU "${cpu}", ` +
    `${(totalmem() / 2 ** 30).toFixed(0)} GB; Node ${process.version}, onnxruntime-node ${ort.env.versions.common}, **provider: CPU**, sessions without spinning. ` +
    'Other jobs may share the cores: times are upper bounds; ratios come from the same interleaved rounds.',
  '',
  `The BERT-shaped encoder (seq ${BERT.seq}, 12 layers, ${matrixSites.length} matrices) rewritten into twin graphs with random factors on every matrix, no vectors: latency only. Medians of ${values.rounds} rounds × ${values.runs} runs per session, all sessions interleaved run by run; every row an explicit mix of 2 experts. Extra MACs: the corrections' multiply-adds per token against the plain matrices' (a shared basis: R·(d_in + d_out) + R² per token, T·R² per example spread over the ${BERT.seq} tokens).`,
  '',
  table,
].join('\n')
process.stdout.write(`${section}\n`)
if (!values['no-write']) {
  await replaceSection(resolve(values.results ?? ''), 'bench:perf:shared-basis', section)
  log(`wrote its section of ${values.results}`)
}
