/**
 * Markdown for the quality report: accuracy tables (absolute and normalised = merged / expert × 100 per task,
 * as the Twin-Merging paper reports), router accuracy and storage columns, the static merges' lambda search on
 * validation, the quality-per-byte levers, and the float16 storage check.
 * @module
 */
import { markdownTable } from '@twinserve/gpu-runner/build'
import type { DtypeCheck } from './float16-check.ts'

export interface Row {
  label: string
  /** Accuracy per task (0..1), in task order. */
  perTask: number[]
  /** Router rows: fraction of examples whose largest applied weight is the true task, per task. */
  routing?: number[]
  /** Bytes to store this model: the twin graph file and the whole package, or one plain graph. */
  storage?: { model?: number; package: number }
}

export const pct = (x: number, digits = 1) => (x * 100).toFixed(digits)
export const mb = (bytes: number) => (bytes / 1e6).toFixed(2)
const avg = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)

/**
 * Per-task normalised score, as fractions: merged / expert for accuracy; for a lower-is-better score (perplexity)
 * expert / merged, so that 1 is the expert and less is worse either way.
 */
export function normalised(
  perTask: readonly number[],
  expert: readonly number[],
  lowerIsBetter = false,
): number[] {
  return perTask.map((a, t) =>
    lowerIsBetter ? (expert[t] as number) / a : a / (expert[t] as number),
  )
}

export function accuracyTable(tasks: readonly string[], rows: readonly Row[]): string {
  return markdownTable(
    ['model', ...tasks, 'mean'],
    rows.map((r) => [r.label, ...r.perTask.map((a) => pct(a)), pct(avg(r.perTask))]),
  )
}

export function normalisedTable(
  tasks: readonly string[],
  rows: readonly Row[],
  expert: readonly number[],
  expertBytes: number,
  lowerIsBetter = false,
): string {
  return markdownTable(
    ['model', ...tasks, 'mean', 'router acc.', 'model MB', 'stored MB', 'vs experts'],
    rows.map((r) => {
      const n = normalised(r.perTask, expert, lowerIsBetter)
      return [
        r.label,
        ...n.map((a) => pct(a)),
        `**${pct(avg(n))}**`,
        r.routing ? pct(avg(r.routing)) : '-',
        r.storage?.model === undefined ? '-' : mb(r.storage.model),
        r.storage ? mb(r.storage.package) : '-',
        r.storage ? `${pct(r.storage.package / expertBytes, 0)}%` : '-',
      ]
    }),
  )
}

export interface LambdaRow {
  label: string
  validation: { lambda: number | undefined; mean: number }[]
  lambda: number | undefined
}

export function lambdaTable(grid: readonly number[], rows: readonly LambdaRow[]): string {
  return markdownTable(
    ['method', ...grid.map((l) => `λ=${l}`), 'picked'],
    rows.map((r) => [
      r.label,
      ...grid.map((l) => {
        const hit = r.validation.find((v) => v.lambda === l)
        if (!hit) return r.validation[0]?.lambda === undefined ? '' : '-'
        const cell = pct(hit.mean)
        return l === r.lambda ? `**${cell}**` : cell
      }),
      r.lambda === undefined ? `no λ: ${pct(r.validation[0]?.mean ?? 0)}` : `λ=${r.lambda}`,
    ]),
  )
}

export interface LeverRow {
  stage: string
  label: string
  packageBytes: number
  modelBytes: number
  inBudget: boolean
  oracle: number
  routed: number
  routedNormalised: number
  routerAccuracy: number
  picked: boolean
}

export function leverTable(rows: readonly LeverRow[]): string {
  return markdownTable(
    [
      'stage',
      'arm',
      'model MB',
      'package MB',
      'in budget',
      'oracle mean',
      'routed mean',
      'routed normalised',
      'router acc.',
    ],
    rows.map((r) => [
      r.stage,
      r.picked ? `**${r.label}** ✓` : r.label,
      mb(r.modelBytes),
      mb(r.packageBytes),
      r.inBudget ? 'yes' : 'no',
      pct(r.oracle, 2),
      pct(r.routed, 2),
      pct(r.routedNormalised, 2),
      pct(r.routerAccuracy, 2),
    ]),
  )
}

export function dtypeTable(c: DtypeCheck): string {
  const [ref] = c.arms
  return markdownTable(
    [
      'factors',
      'model.onnx MB',
      'session create ms',
      'Cast nodes (file → optimised)',
      'batch-1 p50 ms',
      'batch-1 p99 ms',
      'batch-256 rows/s',
      'vs float32 (rows/s)',
    ],
    c.arms.map((a) => [
      a.label,
      mb(a.bytes),
      a.createMs.toFixed(1),
      `${a.castsInFile} → ${a.castsAfterOptimization}`,
      a.batch1.p50.toFixed(3),
      a.batch1.p99.toFixed(3),
      a.batch256RowsPerSecond.toFixed(0),
      ref ? `${(a.batch256RowsPerSecond / ref.batch256RowsPerSecond).toFixed(2)}×` : '-',
    ]),
  )
}
