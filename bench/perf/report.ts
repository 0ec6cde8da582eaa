/**
 * Reporting helpers for the performance benchmarks: machine facts, order statistics, ratio formatting, markdown
 * tables, and (re-exported from bench/results-section.ts) regenerating one section of bench/RESULTS.md.
 * @module
 */
import { readFileSync } from 'node:fs'
import os from 'node:os'
import { markdownTable } from '@twinserve/gpu-runner/build'

export interface Machine {
  nproc: number
  cpu: string
  memGb: number
  node: string
  ort: string
  /** 1-minute load average when the run started and ended (other jobs on a shared machine show here). */
  loadStart: number
  loadEnd?: number
  /** 1-minute load average at each phase boundary (the benchmark itself keeps about 2 cores busy). */
  loads: { phase: string; load: number }[]
}

/** The CPU's model name, as /proc/cpuinfo gives it (every benchmark records it beside its numbers). */
export function cpuModel(): string {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('model name'))
    return line?.split(':')[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown'
  } catch {
    return os.cpus()[0]?.model ?? 'unknown'
  }
}

function ortVersion(): string {
  try {
    const pkg = JSON.parse(
      readFileSync(
        new URL('../../node_modules/onnxruntime-node/package.json', import.meta.url),
        'utf8',
      ),
    ) as { version?: string }
    return pkg.version ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

export function machine(): Machine {
  return {
    nproc: os.availableParallelism(),
    cpu: cpuModel(),
    memGb: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    ort: ortVersion(),
    loadStart: os.loadavg()[0] ?? 0,
    loads: [{ phase: 'start', load: os.loadavg()[0] ?? 0 }],
  }
}

/** Records the load average at a phase boundary. */
export function markLoad(m: Machine, phase: string): void {
  m.loads.push({ phase, load: os.loadavg()[0] ?? 0 })
}

/** The q-quantile (0..1) of already-sorted values, nearest rank. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[i] as number
}

export function summarize(samples: readonly number[]): {
  n: number
  p50: number
  p99: number
  mean: number
} {
  const s = [...samples].sort((a, b) => a - b)
  return {
    n: s.length,
    p50: quantile(s, 0.5),
    p99: quantile(s, 0.99),
    mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length),
  }
}

export const fmt = (x: number, digits = 1): string => (Number.isFinite(x) ? x.toFixed(digits) : '–')

/** "12.3 (1.27×)": an absolute value with its ratio to a reference. */
export function withRatio(value: number, reference: number, digits = 1): string {
  if (!Number.isFinite(value)) return '–'
  if (!Number.isFinite(reference) || reference === 0) return fmt(value, digits)
  return `${fmt(value, digits)} (${(value / reference).toFixed(2)}×)`
}

/** A Markdown table, columns padded (the builder's report table). */
export const table = markdownTable

/** Rewrites one generated section of bench/RESULTS.md (and formats the file): bench/results-section.ts. */
export { writeSection } from '../results-section.ts'
