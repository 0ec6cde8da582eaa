/**
 * Merge-engine benchmark (issue #3): build the shared expert with TIES and compress 8 experts' exclusive
 * knowledge at rank 32, on BERT-base-sized tensors (12 layers × {4 × 768×768, 768×3072, 3072×768}), streaming
 * one tensor name at a time; plus the rate the SVD's matrix products reach against onnxruntime's plain MatMul
 * rate, in the same process.
 *
 * Run: npm run bench:merge            (full size; about a minute on 2 cores)
 *      npm run bench:merge -- --layers 2   (quick look)
 * @module
 */
import os from 'node:os'
import {
  type CallStats,
  compressDelta,
  createRng,
  MatmulBackend,
  mergeTensor,
  type Rng,
  symEig,
} from '@twinserve/gpu-runner/merge'
import { parseMergeSpec } from '@twinserve/shared'
import { cpuModel } from './perf/report.ts'

const EXPERTS = 8
const RANK = 32
/** Task vectors: a rank-8 signal per expert plus dense noise, so the spectrum has a head and a tail. */
const SIGNAL_RANK = 8
const SIGNAL_SCALE = 0.01
const NOISE_SCALE = 0.001
const BASE_SCALE = 0.02
const UNIFORM_NOISE = NOISE_SCALE * Math.sqrt(12)
const TIES = { method: 'ties', density: 0.2, lambda: 1 } as const

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`)
  return v
}

function gaussian(n: number, rng: Rng, scale: number): Float32Array {
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = rng.normal() * scale
  return out
}

const rssMb = () => process.memoryUsage().rss / 2 ** 20

interface Rate {
  label: string
  gflops: number
  msPerCall: number
}

function rateOf(label: string, be: MatmulBackend, stats: CallStats = be.stats): Rate {
  return {
    label,
    gflops: stats.flops / stats.seconds / 1e9,
    msPerCall: (stats.seconds * 1000) / stats.calls,
  }
}

/**
 * The SVD's products against onnxruntime's plain MatMul, in interleaved rounds so both see the same load:
 * each round runs one square 1024³ product, five [768×3072]·[3072×42] and five [3072×768]ᵀ·[768×42] (the
 * sketch-shaped products the SVD makes), then one rank-32 compression of a random 768×3072 matrix.
 */
async function productRates(rounds: number): Promise<{ plain: Rate[]; svd: Rate[] }> {
  const rng = createRng(2, 'rates')
  const rows = 768
  const cols = 3072
  const l = RANK + 10
  const square = gaussian(1024 * 1024, rng, 1)
  const v = gaussian(rows * cols, rng, 1)
  const omega = gaussian(cols * l, rng, 1)
  const q = gaussian(rows * l, rng, 1)
  const squareBe = new MatmulBackend()
  const thinBe = new MatmulBackend()
  const thinTBe = new MatmulBackend()
  const svdBe = new MatmulBackend()
  const round = async () => {
    await squareBe.gemm(square, [1024, 1024], square, [1024, 1024])
    for (let i = 0; i < 5; i++) await thinBe.gemm(v, [rows, cols], omega, [cols, l])
    for (let i = 0; i < 5; i++) await thinTBe.gemm(v, [rows, cols], q, [rows, l], { transA: true })
    await compressDelta(v, rows, cols, { rank: RANK }, { backend: svdBe })
  }
  await round() // warm-up: sessions, caches
  for (const be of [squareBe, thinBe, thinTBe, svdBe]) be.resetStats()
  for (let r = 0; r < rounds; r++) await round()
  const out = {
    plain: [
      rateOf('plain MatMul [1024×1024]·[1024×1024]', squareBe),
      rateOf(`plain MatMul [768×3072]·[3072×${l}]`, thinBe),
      rateOf(`plain MatMul [3072×768]ᵀ·[768×${l}]`, thinTBe),
    ],
    svd: [
      rateOf(`SVD, all products (${svdBe.stats.calls / rounds} per compression)`, svdBe),
      rateOf(
        `SVD, the ${svdBe.stats.large.calls / rounds} products with the matrix (${((100 * svdBe.stats.large.flops) / svdBe.stats.flops).toFixed(0)}% of FLOPs)`,
        svdBe,
        svdBe.stats.large,
      ),
    ],
  }
  for (const be of [squareBe, thinBe, thinTBe, svdBe]) await be.dispose()
  return out
}

async function main(): Promise<void> {
  const layers = arg('layers', 12)
  const loadBefore = os.loadavg()[0] as number
  const shapes: [string, number, number][] = []
  for (let l = 0; l < layers; l++) {
    for (const p of ['query', 'key', 'value', 'attention.output'])
      shapes.push([`layer.${l}.${p}.weight`, 768, 768])
    shapes.push([`layer.${l}.intermediate.weight`, 768, 3072])
    shapes.push([`layer.${l}.output.weight`, 3072, 768])
  }
  const params = shapes.reduce((s, [, r, c]) => s + r * c, 0)

  // 1. The streaming pipeline.
  const spec = parseMergeSpec(TIES)
  const svdBe = new MatmulBackend()
  const genBe = new MatmulBackend() // task-vector generation, kept out of the SVD's counters
  const names = Array.from({ length: EXPERTS }, (_, i) => `expert-${i}`)
  let genMs = 0
  let tiesMs = 0
  let compressMs = 0
  // CPU seconds (all threads of this process, onnxruntime's included): less sensitive than wall time to
  // other processes competing for the same cores.
  let tiesCpu = 0
  let compressCpu = 0
  const cpu = () => {
    const u = process.cpuUsage()
    return (u.user + u.system) / 1e6
  }
  let peakSampledRss = rssMb()
  const relErrors: number[] = []
  const ranks: number[] = []
  const methods = new Set<string>()
  /** One 768×768 exclusive matrix kept aside to compare the randomized SVD with the optimum. */
  let probe: Float32Array | undefined
  const started = performance.now()
  for (const [tensorName, rows, cols] of shapes) {
    const g0 = performance.now()
    const rng = createRng(0, 'bench', tensorName)
    const base = gaussian(rows * cols, rng, BASE_SCALE)
    const experts: Float32Array[] = []
    for (let t = 0; t < EXPERTS; t++) {
      const left = gaussian(rows * SIGNAL_RANK, rng, SIGNAL_SCALE)
      const right = gaussian(SIGNAL_RANK * cols, rng, 1 / Math.sqrt(SIGNAL_RANK))
      const theta = await genBe.gemm(left, [rows, SIGNAL_RANK], right, [SIGNAL_RANK, cols])
      // Uniform noise of the same variance: a Gaussian per entry would dominate the benchmark's wall time.
      for (let i = 0; i < theta.length; i++)
        theta[i] =
          (theta[i] as number) + (base[i] as number) + (rng.uniform() - 0.5) * UNIFORM_NOISE
      experts.push(theta)
    }
    genMs += performance.now() - g0

    const t0 = performance.now()
    const c0 = cpu()
    const shared = mergeTensor(spec, { base, experts, names, shape: [rows, cols], tensorName })
    const t1 = performance.now()
    const c1 = cpu()
    tiesMs += t1 - t0
    tiesCpu += c1 - c0
    for (const theta of experts) {
      const v = new Float32Array(theta.length)
      for (let i = 0; i < v.length; i++) v[i] = (theta[i] as number) - (shared[i] as number)
      if (!probe && rows === 768 && cols === 768) probe = v
      const c = await compressDelta(v, rows, cols, { rank: RANK }, { backend: svdBe })
      relErrors.push(c.relError)
      ranks.push(c.rank)
      methods.add(c.method)
    }
    compressMs += performance.now() - t1
    compressCpu += cpu() - c1
    peakSampledRss = Math.max(peakSampledRss, rssMb())
  }
  const wallMs = performance.now() - started
  const peakRssMb = process.resourceUsage().maxRSS / 1024
  const loadAfter = os.loadavg()[0] as number
  await svdBe.dispose()
  await genBe.dispose()

  // Quality, outside the timings: the optimal rank-32 error (Eckart–Young, from the float64 eigenvalues of
  // vᵀv) against what the randomized SVD reached on the same matrix.
  let quality = ''
  if (probe) {
    const qBe = new MatmulBackend()
    const gram = await qBe.gemm(probe, [768, 768], probe, [768, 768], { transA: true })
    const eig = symEig(Float64Array.from(gram), 768)
    const s2 = Array.from(eig.values, (x) => Math.max(0, x)).sort((a, b) => b - a)
    const all = s2.reduce((a, b) => a + b, 0)
    const optimal = Math.sqrt(s2.slice(RANK).reduce((a, b) => a + b, 0) / all)
    const reached = (await compressDelta(probe, 768, 768, { rank: RANK }, { backend: qBe }))
      .relError
    quality = `rank-${RANK} relError on one 768×768 exclusive matrix: ${reached.toFixed(4)} vs optimal ${optimal.toFixed(4)} (+${((reached / optimal - 1) * 100).toFixed(2)}%)`
    await qBe.dispose()
  }

  // 2. Product rates, interleaved with plain MatMul.
  const rates = await productRates(arg('rounds', 10))
  const svdRate = svdBe.stats.flops / svdBe.stats.seconds / 1e9
  const endToEnd = svdBe.stats.flops / (compressMs / 1000) / 1e9
  const sorted = [...relErrors].sort((a, b) => a - b)
  const q = (p: number) =>
    (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number).toFixed(4)
  const fmt = (x: number, d = 1) => x.toFixed(d)

  console.log(`# merge-engine benchmark, ${new Date().toISOString().slice(0, 10)}`)
  console.log(
    `machine: ${os.availableParallelism()} cores (${cpuModel()}), ${fmt(os.totalmem() / 2 ** 30, 0)} GiB, node ${process.version}, onnxruntime-node CPU provider (${svdBe.provider ?? 'cpu'}); 1-min load average ${fmt(loadBefore, 2)} before, ${fmt(loadAfter, 2)} after (other processes share the cores)`,
  )
  console.log(
    `workload: ${layers} layers × 6 tensors = ${shapes.length} tensors, ${fmt(params / 1e6, 2)} M params per model, ${EXPERTS} experts; TIES density ${TIES.density}; rank ${RANK} (${[...methods].join('/')} SVD, oversample 10, 2 power iterations)`,
  )
  console.log('')
  console.log('| phase | wall s | CPU s (all threads) |')
  console.log('| --- | --- | --- |')
  console.log(
    `| TIES shared expert (${shapes.length} tensors × ${EXPERTS} experts) | ${fmt(tiesMs / 1000, 2)} | ${fmt(tiesCpu, 2)} |`,
  )
  console.log(
    `| compress ${EXPERTS} experts × ${shapes.length} tensors at rank ${RANK} | ${fmt(compressMs / 1000, 2)} | ${fmt(compressCpu, 2)} |`,
  )
  console.log(
    `| **TIES + compression** (target ≤ 60 s) | **${fmt((tiesMs + compressMs) / 1000, 2)}** | ${fmt(tiesCpu + compressCpu, 2)} |`,
  )
  console.log(`| (generating the random experts, not counted) | ${fmt(genMs / 1000, 2)} | |`)
  console.log(`| wall, everything | ${fmt(wallMs / 1000, 2)} | |`)
  console.log('')
  console.log(
    `peak RSS: **${fmt(peakRssMb, 0)} MB** (getrusage maxrss; target ≤ 2048 MB); highest sampled after a tensor: ${fmt(peakSampledRss, 0)} MB`,
  )
  console.log(
    `relError per expert-tensor (${relErrors.length}): min ${q(0)}, median ${q(0.5)}, max ${q(0.9999)}; ranks kept: ${Math.min(...ranks)}–${Math.max(...ranks)}`,
  )
  if (quality) console.log(quality)
  console.log('')
  const thinRate = (rates.plain[1] as Rate).gflops
  console.log(
    `matrix products, interleaved rounds (${arg('rounds', 10)}), in-session time (tensor hand-over included):`,
  )
  console.log('')
  console.log('| products | GFLOP/s | ms/call | vs plain [768×3072]·[3072×42] |')
  console.log('| --- | --- | --- | --- |')
  for (const r of [...rates.plain, ...rates.svd])
    console.log(
      `| ${r.label} | ${fmt(r.gflops)} | ${fmt(r.msPerCall, 3)} | ${fmt(r.gflops / thinRate, 2)}× |`,
    )
  console.log('')
  console.log(
    `whole pipeline: ${svdBe.stats.calls} SVD products, ${fmt(svdBe.stats.flops / 1e9, 1)} GFLOP, ${fmt(svdRate)} GFLOP/s in session; ${fmt(endToEnd)} GFLOP/s over the whole compression time (JS eigensolver, sketch and bookkeeping included)`,
  )
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
