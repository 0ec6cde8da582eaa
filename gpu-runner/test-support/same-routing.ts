/**
 * Two generation engines that should route alike (a rewritten likelihood graph against the path it replaces):
 * the same prompts through both, greedy, router on; the mixes' largest difference and the tokens compared.
 * @module
 */
import type { GenerationEngine, GenerationEvent } from '../src/generate/engine.ts'
import type { RowControls } from '../src/twin-contract/encode-controls.ts'

/** The applied expert weights and the token ids of one generation. */
export async function weightsOf(events: AsyncIterable<GenerationEvent>) {
  const got = { weights: [] as number[], ids: [] as number[] }
  for await (const e of events) {
    if (e.type === 'start') got.weights = [...(e.expertWeights ?? [])]
    if (e.type === 'token') got.ids.push(e.id)
    if (e.type === 'error') throw e.error
  }
  return got
}

/**
 * Submits every prompt to both engines (3 greedy tokens, the router on) and returns, per prompt, both mixes and
 * token ids, with the largest difference between corresponding weights.
 */
export async function sameRouting(
  a: GenerationEngine,
  b: GenerationEngine,
  prompts: readonly number[][],
): Promise<{
  got: Awaited<ReturnType<typeof weightsOf>>[]
  want: Awaited<ReturnType<typeof weightsOf>>[]
  worst: number
}> {
  const request = (promptIds: number[]) => ({
    promptIds,
    maxTokens: 3,
    sampling: { temperature: 0, topP: 1, topK: 0 },
    controls: { useRouter: 1 } as RowControls,
  })
  const got = await Promise.all(prompts.map((p) => weightsOf(a.submit(request(p)))))
  const want = await Promise.all(prompts.map((p) => weightsOf(b.submit(request(p)))))
  let worst = 0
  for (const [k, g] of got.entries())
    g.weights.forEach((w, e) => {
      worst = Math.max(worst, Math.abs(w - (want[k]?.weights[e] as number)))
    })
  return { got, want, worst }
}
