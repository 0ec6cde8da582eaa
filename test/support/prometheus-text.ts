/**
 * Reads samples out of Prometheus text exposition (what a runner's `/metrics` answers), for tests that check how
 * counters moved.
 * @module
 */

/** Labels of one sample line, e.g. `{model="m",expert="a"}` → {model: 'm', expert: 'a'}. */
function labelsOf(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of text.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1] as string] = m[2] as string
  return out
}

/**
 * The sum of the samples named `name` whose labels include `labels` (0 when there are none).
 * @example promSample(text, 'twinserve_runner_routed_rows_total', { model: 'tiny-twin' })
 */
export function promSample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number {
  let sum = 0
  for (const line of text.split('\n')) {
    const m = /^(\w+)(\{[^}]*\})?\s+(\S+)$/.exec(line)
    if (!m || m[1] !== name) continue
    const have = labelsOf(m[2] ?? '')
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3])
  }
  return sum
}
