/**
 * The quality–cost frontier (issue #18): one twin package per configuration — fixed ranks, byte budgets
 * (`exclusive.budget`), and at each budget the trained, prototype and data-free routers — each measured for
 * normalised accuracy (validation and test), stored bytes against the experts', and latency against the shared
 * model (batch 1 and 8, one onnxruntime session per model, all sessions timed interleaved run by run). The
 * Pareto points are the configurations no other beats on both validation accuracy and bytes (latency follows
 * the total rank here and is too noisy on a shared machine to rank by).
 * @module
 */
import { markdownTable } from '@twinserve/gpu-runner/build'
import { ort } from '@twinserve/gpu-runner/runtime'
import { encodeControls } from '@twinserve/gpu-runner/twin-contract'
import type { RecipeInput } from '@twinserve/shared'
import { evaluate, mean, type TaskData } from './evaluate.ts'
import { mb, normalised, pct } from './report.ts'
import { type ArmBuilder, applyChange, type RecipeChange } from './twin-arms.ts'

export interface FrontierArm {
  label: string
  change: RecipeChange
}

/** The data-free router reads the pixels: on hidden1 its scores do not separate the tasks (about chance). */
const DATA_FREE = { kind: 'data-free', feature: 'pixels' } as const

/** How the demo recipe compresses, for the first arm's label: `budget 0.055, int8` or `rank 80, fc2.weight 64, float16`. */
export function describeExclusive(exclusive: RecipeInput['exclusive']): string {
  const e = exclusive ?? {}
  const parts =
    e.budget !== undefined
      ? [`budget ${e.budget}`]
      : e.rank !== undefined || e.energy !== undefined
        ? [e.rank !== undefined ? `rank ${e.rank}` : `energy ${e.energy}`]
        : ['the default budget']
  for (const t of e.tensors ?? []) parts.push(`${t.match} ${t.rank ?? `energy ${t.energy}`}`)
  if (e.dtype) parts.push(e.dtype)
  return parts.join(', ')
}

/**
 * The configurations, from the demo recipe: float16 factors (and int8 at each budget), no static variants, no
 * shared file. The dtype is pinned rather than taken from the recipe: since issue #18 the demo recipe is one of
 * the frontier's own points (int8 factors), and the table's float16 rows must keep meaning what they say.
 */
export function frontierArms(
  recipe: RecipeInput,
  ranks: readonly number[],
  budgets: readonly number[],
): FrontierArm[] {
  const dtype = 'float16' as const
  const arms: FrontierArm[] = [
    { label: `demo recipe (${describeExclusive(recipe.exclusive)})`, change: {} },
  ]
  for (const rank of ranks)
    arms.push({ label: `rank ${rank}, trained router`, change: { exclusive: { rank, dtype } } })
  for (const budget of budgets)
    for (const [name, router] of [
      ['trained', {}],
      ['prototype', { kind: 'prototype' }],
      ['data-free', DATA_FREE],
    ] as const)
      arms.push({
        label: `budget ${budget}, ${name} router`,
        change: { exclusive: { budget, dtype }, router },
      })
  // The low-bit lever: int8 factors (scales folded into σ). Under a budget the builder counts their bytes, so the
  // same fraction buys twice float16's ranks.
  for (const budget of budgets)
    arms.push({
      label: `budget ${budget}, int8 factors, trained router`,
      change: { exclusive: { budget, dtype: 'int8' } },
    })
  return arms
}

export interface FrontierRow {
  label: string
  valNormalised: number
  testNormalised: number
  routerAccuracy: number
  packageBytes: number
  /** Σ rank over matrices and experts. */
  totalRank: number
  /** Median latency / the shared model's, batch 1 and batch 8. */
  batch1: number
  batch8: number
  pareto: boolean
}

const sessionOptions: ort.InferenceSession.SessionOptions = {
  graphOptimizationLevel: 'all',
  executionProviders: ['cpu'],
  // Several sessions in one process on few cores interfere when they spin (handbook: factored-serving.md).
  extra: { session: { intra_op: { allow_spinning: '0' } } },
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? 0
}

/** Median run time of every session, timed interleaved (run k of every session back to back), in ms. */
async function interleaved(
  sessions: readonly { session: ort.InferenceSession; feeds: Record<string, ort.Tensor> }[],
  runs: number,
): Promise<number[]> {
  const times = sessions.map(() => [] as number[])
  for (const s of sessions) for (let w = 0; w < 20; w++) await s.session.run(s.feeds)
  for (let k = 0; k < runs; k++)
    for (const [i, s] of sessions.entries()) {
      const t0 = performance.now()
      await s.session.run(s.feeds)
      times[i]?.push(performance.now() - t0)
    }
  return times.map(median)
}

export async function runFrontier(opts: {
  recipe: RecipeInput
  arms: readonly FrontierArm[]
  builder: ArmBuilder
  data: { val: readonly TaskData[]; test: readonly TaskData[] }
  expert: { val: readonly number[]; test: readonly number[]; bytes: number }
  /** The shared model as a plain graph (the latency reference). */
  shared: Uint8Array
  runs?: number
  log: (line: string) => void
}): Promise<FrontierRow[]> {
  const T = opts.recipe.experts.length
  const built: (Omit<FrontierRow, 'batch1' | 'batch8' | 'pareto'> & { model: Uint8Array })[] = []
  for (const arm of opts.arms) {
    const b = await opts.builder.build(
      applyChange(opts.recipe, { variants: [], shared_file: false, ...arm.change }),
    )
    const session = await ort.InferenceSession.create(b.model, sessionOptions)
    try {
      const mode = { experts: T, mode: { kind: 'router' } } as const
      const val = await evaluate(session, opts.data.val, mode)
      const test = await evaluate(session, opts.data.test, mode)
      built.push({
        label: arm.label,
        valNormalised: mean(normalised(val.perTask, opts.expert.val)),
        testNormalised: mean(normalised(test.perTask, opts.expert.test)),
        routerAccuracy: mean(test.routing ?? []),
        packageBytes: b.report.sizes.packageBytes,
        totalRank: b.report.exclusive.reduce(
          (a, r) => a + (r.ranks ?? []).reduce((x, y) => x + y, 0),
          0,
        ),
        model: b.model,
      })
    } finally {
      await session.release()
    }
    opts.log(`frontier: ${arm.label}`)
  }
  // Latency: every twin graph and the shared model, interleaved, routed rows (the embedded router, dense).
  const x = opts.data.test[0]?.split.x ?? new Float32Array(8 * 784)
  const pixels = (rows: number) => new ort.Tensor('float32', x.subarray(0, rows * 784), [rows, 784])
  const sessions = [await ort.InferenceSession.create(opts.shared, sessionOptions)]
  for (const b of built) sessions.push(await ort.InferenceSession.create(b.model, sessionOptions))
  const ratios: { b1: number[]; b8: number[] } = { b1: [], b8: [] }
  try {
    for (const [key, rows] of [
      ['b1', 1],
      ['b8', 8],
    ] as const) {
      const feeds = sessions.map((session, i) => ({
        session,
        feeds:
          i === 0
            ? { pixels: pixels(rows) }
            : { pixels: pixels(rows), ...encodeControls(Array(rows).fill({ useRouter: 1 }), T) },
      }))
      const t = await interleaved(feeds, opts.runs ?? 400)
      const ref = t[0] ?? 1
      ratios[key] = t.slice(1).map((v) => v / ref)
    }
  } finally {
    for (const s of sessions) await s.release()
  }
  return built.map(({ model: _m, ...row }, i) => ({
    ...row,
    batch1: ratios.b1[i] ?? 0,
    batch8: ratios.b8[i] ?? 0,
    pareto: !built.some(
      (o) =>
        o !== built[i] &&
        o.valNormalised >= row.valNormalised &&
        o.packageBytes <= row.packageBytes &&
        (o.valNormalised > row.valNormalised || o.packageBytes < row.packageBytes),
    ),
  }))
}

export function frontierTable(rows: readonly FrontierRow[], expertBytes: number): string {
  return markdownTable(
    [
      'configuration',
      'val normalised',
      'test normalised',
      'router acc. (test)',
      'Σ rank',
      'package MB',
      'vs experts',
      'batch 1 vs shared',
      'batch 8 vs shared',
      'Pareto',
    ],
    rows.map((r) => [
      r.pareto ? `**${r.label}**` : r.label,
      pct(r.valNormalised),
      pct(r.testNormalised),
      pct(r.routerAccuracy),
      String(r.totalRank),
      mb(r.packageBytes),
      `${pct(r.packageBytes / expertBytes, 1)}%`,
      `${r.batch1.toFixed(2)}×`,
      `${r.batch8.toFixed(2)}×`,
      r.pareto ? '✓' : '',
    ]),
  )
}
