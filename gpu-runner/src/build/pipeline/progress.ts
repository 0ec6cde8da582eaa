/**
 * Progress for long build steps: a redrawn bar on an interactive terminal, one line per finished step otherwise
 * (CI logs, pipes), nothing when quiet. Bars go to stderr so that stdout carries only the final table.
 * @module
 */

export interface Step {
  /** Sets progress to `done` of `total` (redraws at most every 100 ms). */
  tick(done: number, total?: number): void
  /** Finishes the step; `summary` is appended to its line. */
  done(summary?: string): void
}

export interface Reporter {
  step(label: string, total?: number): Step
  /** Seconds per finished step, in order. */
  readonly timings: { label: string; seconds: number }[]
}

export interface ReporterOptions {
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }
  /** Bars only on a TTY outside CI, unless forced either way. */
  interactive?: boolean
  quiet?: boolean
}

/** Whether bars make sense on `stream`: a terminal, and not a CI runner (whose logs keep every redraw). */
export function isInteractive(
  stream: { isTTY?: boolean },
  env: NodeJS.ProcessEnv = process.env,
): boolean {
  return Boolean(stream.isTTY) && !env.CI
}

export function bar(done: number, total: number, width = 24): string {
  const frac = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0
  const full = Math.round(frac * width)
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${done}/${total}`
}

export function createReporter(opts: ReporterOptions = {}): Reporter {
  const stream = opts.stream ?? process.stderr
  const interactive = !opts.quiet && (opts.interactive ?? isInteractive(stream))
  const timings: { label: string; seconds: number }[] = []
  return {
    timings,
    step(label, total) {
      const started = performance.now()
      let last = 0
      let n = 0
      let of = total ?? 0
      const draw = () => {
        const text = of > 0 ? `${label} ${bar(n, of)}` : `${label} ${n > 0 ? n : ''}`
        stream.write(`\r\x1b[2K${text}`)
      }
      if (interactive) draw()
      return {
        tick(done, t) {
          n = done
          if (t !== undefined) of = t
          const now = performance.now()
          if (interactive && now - last > 100) {
            last = now
            draw()
          }
        },
        done(summary) {
          const seconds = (performance.now() - started) / 1000
          timings.push({ label, seconds })
          if (opts.quiet) return
          const line = `${label}: done in ${seconds.toFixed(1)} s${summary ? ` (${summary})` : ''}`
          stream.write(interactive ? `\r\x1b[2K${line}\n` : `${line}\n`)
        },
      }
    },
  }
}

/** A Markdown table (readable in a terminal, pasteable into RESULTS.md), columns padded to equal width. */
export function markdownTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`
  return [
    line(headers),
    `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`,
    ...rows.map(line),
  ].join('\n')
}
