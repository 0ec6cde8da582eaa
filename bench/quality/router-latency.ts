/**
 * What routing costs in latency, on the text twin: the same texts through (a) the shared model as a plain graph,
 * (b) the twin graph with the experts' weights given (a one-hot mix, the router skipped) and (c) the twin graph
 * routing itself. (c) − (b) is the router's own cost (its feature's copy of the shared layers below the feature
 * plus the MLP); (b) − (a) is the exclusive-knowledge corrections. Batch 1 and 16, arms interleaved run by run
 * so that load on the shared cores hits all arms alike; medians reported.
 * @module
 */
import { controlsOf, encodeControls, type RowControls } from '@twinserve/gpu-runner/twin-contract'
import { openCpu, type Session } from './evaluate.ts'
import { type TextTaskData, textFeeds } from './text-evaluate.ts'

export interface LatencyArm {
  label: string
  /** Median ms per run, by batch size. */
  p50: Record<number, number>
}

export interface RouterLatency {
  batches: number[]
  runs: number
  arms: LatencyArm[]
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? 0 : (s[Math.floor((s.length - 1) / 2)] as number)
}

/**
 * @param shared  the shared model as a plain graph
 * @param twin    the twin graph
 * @param data    texts to run (the first `batch` rows of the first task with enough of them)
 */
export async function measureRouterLatency(
  shared: Uint8Array,
  twin: Uint8Array,
  experts: number,
  data: readonly TextTaskData[],
  opts: { batches?: number[]; runs?: number } = {},
): Promise<RouterLatency> {
  const batches = opts.batches ?? [1, 16]
  const runs = opts.runs ?? 200
  const sessions: Session[] = [await openCpu(shared), await openCpu(twin)]
  const [plain, twinSession] = sessions as [Session, Session]
  try {
    const arms: LatencyArm[] = [
      { label: 'shared model (plain graph)', p50: {} },
      { label: 'twin, weights given (one-hot, no router)', p50: {} },
      { label: 'twin, routed (router on)', p50: {} },
    ]
    for (const batch of batches) {
      const d = data.find((x) => x.n >= batch) ?? data[0]
      if (!d) break
      const tokens = textFeeds(d, 0, Math.min(batch, d.n))
      const rows = (c: RowControls) => Array(Math.min(batch, d.n)).fill(c) as RowControls[]
      const oneHot = Array.from({ length: experts }, (_, t) => (t === 0 ? 1 : 0))
      const controls = controlsOf(twinSession.inputNames)
      const feeds = [
        tokens,
        { ...tokens, ...encodeControls(rows({ mixWeights: oneHot }), experts, controls) },
        { ...tokens, ...encodeControls(rows({ useRouter: 1 }), experts, controls) },
      ]
      const times: number[][] = arms.map(() => [])
      const pairs = [
        [plain, 0],
        [twinSession, 1],
        [twinSession, 2],
      ] as const
      for (let r = -20; r < runs; r++)
        for (const [s, k] of pairs) {
          const t0 = performance.now()
          await s.run(feeds[k] as (typeof feeds)[number])
          if (r >= 0) times[k]?.push(performance.now() - t0)
        }
      arms.forEach((a, k) => {
        a.p50[batch] = median(times[k] ?? [])
      })
    }
    return { batches, runs, arms }
  } finally {
    for (const s of sessions) await s.release()
  }
}
