/**
 * An experiment's results from its exposures in D1: per arm n, error rate, latency p50/p95, mean reward with a
 * 95% interval; per compared arm the always-valid mSPRT p-value and confidence sequence against the control,
 * replayed over the rewards in the order they arrived (so the p-value is the same whenever it is read), and the
 * decision label; plus time series for the dashboard.
 * @module
 */
import { type ArmResults, EXPERIMENT_BUCKETS, type ExperimentResults } from '@twinserve/shared'
import { banditFor } from './bandit.ts'
import { publicExperiment, type StoredExperiment } from './experiment-store.ts'
import { decide } from './statistics/decision.ts'
import { rewardInterval } from './statistics/intervals.ts'
import { SequentialComparison } from './statistics/msprt.ts'
import { quantileIndex } from './statistics/quantile.ts'

/** Points kept per p-value history (the replay itself sees every reward). */
const HISTORY_POINTS = 200
/** Time buckets the series aims for. */
const SERIES_BUCKETS = 60
const NICE_BUCKETS_MS = [
  1_000, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000, 86_400_000,
]

function bucketWidth(spanMs: number): number {
  const ideal = spanMs / SERIES_BUCKETS
  return NICE_BUCKETS_MS.find((w) => w >= ideal) ?? 86_400_000
}

/** Replays the rewards of `arm` and the control in arrival order through the mSPRT. */
function compare(
  rewards: readonly { arm: string; reward: number }[],
  arm: string,
  control: string,
  e: StoredExperiment,
  alpha: number,
) {
  const test = new SequentialComparison({
    tau2: e.statistics.mixture_sd ** 2,
    burnIn: e.statistics.burn_in,
    alpha,
  })
  const history: { rewards: number; p_value: number }[] = []
  const relevant = rewards.filter((r) => r.arm === arm || r.arm === control)
  const every = Math.max(1, Math.ceil(relevant.length / HISTORY_POINTS))
  relevant.forEach((r, i) => {
    test.add(r.arm === control ? 'control' : 'treatment', r.reward)
    if ((i + 1) % every === 0 || i === relevant.length - 1)
      history.push({ rewards: i + 1, p_value: test.pValue })
  })
  return { test, history }
}

export async function experimentResults(
  env: Env,
  e: StoredExperiment,
  now = Date.now(),
): Promise<ExperimentResults> {
  const db = env.DB
  const [counts, rewardRows] = await db.batch([
    db
      .prepare(
        `SELECT arm, COUNT(*) AS n, SUM(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors
         FROM exposures WHERE experiment_id = ? AND pinned = 0 GROUP BY arm`,
      )
      .bind(e.id),
    db
      .prepare(
        `SELECT arm, reward FROM exposures WHERE experiment_id = ? AND pinned = 0 AND reward IS NOT NULL
         ORDER BY feedback_ts, request_id`,
      )
      .bind(e.id),
  ])
  const byArm = new Map(
    ((counts?.results ?? []) as { arm: string; n: number; errors: number }[]).map((r) => [
      r.arm,
      r,
    ]),
  )
  const rewards = (rewardRows?.results ?? []) as { arm: string; reward: number }[]

  // Latency quantiles by index into each arm's sorted latencies (exposures_arm_latency).
  const latencyQueries = e.arms.flatMap((a) => {
    const n = byArm.get(a.name)?.n ?? 0
    if (n === 0) return []
    return [0.5, 0.95].map((q) =>
      db
        .prepare(
          `SELECT latency_ms FROM exposures WHERE experiment_id = ? AND arm = ? AND pinned = 0
           ORDER BY latency_ms LIMIT 1 OFFSET ?`,
        )
        .bind(e.id, a.name, quantileIndex(n, q)),
    )
  })
  const latencyRows = latencyQueries.length > 0 ? await db.batch(latencyQueries) : []
  const latency = new Map<string, { p50: number; p95: number }>()
  let li = 0
  for (const a of e.arms) {
    if ((byArm.get(a.name)?.n ?? 0) === 0) continue
    const p50 = (latencyRows[li++]?.results[0] as { latency_ms: number } | undefined)?.latency_ms
    const p95 = (latencyRows[li++]?.results[0] as { latency_ms: number } | undefined)?.latency_ms
    if (p50 !== undefined && p95 !== undefined) latency.set(a.name, { p50, p95 })
  }

  const start = e.started_at ? Date.parse(e.started_at) : Date.parse(e.created_at)
  const end = e.stopped_at ? Date.parse(e.stopped_at) : now
  const width = bucketWidth(Math.max(1, end - start))
  const { results: series } = await db
    .prepare(
      `SELECT arm, (ts / CAST(? AS INTEGER)) * CAST(? AS INTEGER) AS t, COUNT(*) AS exposures, AVG(latency_ms) AS latency_ms,
         COUNT(reward) AS rewards, AVG(reward) AS reward_mean
       FROM exposures WHERE experiment_id = ? AND pinned = 0 GROUP BY arm, t ORDER BY t, arm`,
    )
    .bind(width, width, e.id)
    .all<{
      arm: string
      t: number
      exposures: number
      latency_ms: number
      rewards: number
      reward_mean: number | null
    }>()

  const bandit = e.mode === 'thompson' && e.status !== 'draft' ? await banditFor(env, e) : undefined
  const control = e.arms.find((a) => a.control)
  const compared = e.arms.filter((a) => !a.control).length
  // Bonferroni over the arms compared with the control keeps the experiment-wide false-positive rate ≤ alpha.
  const alpha = e.statistics.alpha / Math.max(1, compared)
  const history: Record<string, { rewards: number; p_value: number }[]> = {}
  const banditCounts = bandit
    ? e.arms.map((_, i) =>
        bandit.allocation.filter((r) => r[2] === i).reduce((s, r) => s + r[1] - r[0], 0),
      )
    : undefined

  const arms = e.arms.map((a, i): ArmResults => {
    const c = byArm.get(a.name)
    const n = c?.n ?? 0
    const errors = c?.errors ?? 0
    const mine = rewards.filter((r) => r.arm === a.name).map((r) => r.reward)
    let versus: ArmResults['versus_control'] = null
    if (control && !a.control) {
      const { test, history: h } = compare(rewards, a.name, control.name, e, alpha)
      history[a.name] = h
      versus = {
        difference: test.difference,
        confidence_sequence: test.interval ?? null,
        p_value: test.pValue,
        alpha,
      }
    }
    const post = bandit?.arms.find((b) => b.name === a.name)
    const buckets = banditCounts?.[i] ?? a.buckets
    return {
      arm: a.name,
      control: a.control,
      status: a.status,
      stop_reason: a.stop_reason,
      weight: a.weight,
      share: (buckets / EXPERIMENT_BUCKETS) * 100,
      n,
      errors,
      error_rate: n > 0 ? errors / n : null,
      latency_ms: latency.get(a.name) ?? null,
      feedback: mine.length,
      reward: mine.length > 0 ? rewardInterval(mine) : null,
      versus_control: versus,
      decision: decide({
        control: a.control,
        stopped: a.status === 'stopped',
        pValue: versus?.p_value,
        difference: versus?.difference,
        alpha,
      }),
      posterior: post ? { alpha: post.alpha, beta: post.beta, p_best: post.p_best } : null,
    }
  })
  return {
    experiment: publicExperiment(e),
    generated_at: new Date(now).toISOString(),
    arms,
    timeseries: { bucket_ms: width, points: series },
    p_value_history: history,
  }
}
