/**
 * The generation benches' workload: zoo/lm's held-out prompts, and one greedy sequence timed at its first and last
 * token.
 * @module
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { GenerationEngine } from '@twinserve/gpu-runner/generate'
import type { RowControls } from '@twinserve/gpu-runner/twin-contract'

const PROMPTS = join(import.meta.dirname, '../zoo/lm/data/prompts.jsonl')

/**
 * The test split's prompts. The file lists them domain by domain (the first 200 are emails): `round-robin` takes
 * one per domain in turn, so any run of them is a mixed load, as routing would see it.
 */
export function heldOutPrompts(order: 'file' | 'round-robin'): string[] {
  const held = readFileSync(PROMPTS, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { split: string; domain: string; prompt: string })
    .filter((p) => p.split === 'test')
  if (order === 'file') return held.map((p) => p.prompt)
  const byDomain = new Map<string, string[]>()
  for (const p of held) byDomain.set(p.domain, [...(byDomain.get(p.domain) ?? []), p.prompt])
  const lists = [...byDomain.values()]
  return Array.from({ length: Math.max(...lists.map((v) => v.length)) }, (_, i) =>
    lists.flatMap((v) => (v[i] !== undefined ? [v[i]] : [])),
  ).flat()
}

/** One greedy sequence of up to `tokens` tokens: when it was submitted, when its first and last tokens came, how many. */
export async function timedGreedy(
  engine: GenerationEngine,
  promptIds: number[],
  tokens: number,
  controls: RowControls,
): Promise<{ t0: number; first: number; last: number; n: number }> {
  const t0 = performance.now()
  let first = 0
  let last = 0
  let n = 0
  for await (const e of engine.submit({
    promptIds,
    maxTokens: tokens,
    sampling: { temperature: 0, topP: 1, topK: 0 },
    stopTokenIds: [],
    controls,
  })) {
    if (e.type !== 'token') continue
    n++
    last = performance.now()
    if (n === 1) first = last
  }
  return { t0, first, last, n }
}
