/**
 * The routing state of one gateway isolate: a snapshot of the registry (refetched when older than
 * ROUTING_CACHE_MS, or at once after a membership call or a connection failure), and this isolate's own view of
 * each runner — requests it has in flight there and a circuit breaker — as every node of a load balancer keeps
 * its own. Picks use power of two choices over the live holders of the model.
 *
 * Outlier ejection (issue #16: a SIGSTOPped runner kept getting first attempts, each one waiting for its hedge,
 * and past the hedge budget for its attempt budget): a runner with an attempt past its hedge point is a
 * suspect until it answers anything (proof of life; a slow runner is cleared by its late answers, a frozen one
 * is not) or the overdue attempt's own budget runs out (then its timeout is the breaker's business). Picks pass
 * a suspect over while another runner can take the request. It is Envoy's outlier detection on the signal a
 * hedge already gives, and costs no extra load: the request that found it out was hedged anyway.
 * @module
 */
import type { BreakerState } from '@twinserve/shared'
import type { GatewayConfig } from '../config.ts'
import { CircuitBreaker } from './circuit-breaker.ts'
import { HedgeBudget } from './hedge-budget.ts'
import { LatencyTracker } from './latency-tracker.ts'
import { pickPowerOfTwo } from './power-of-two.ts'
import {
  EXPIRY_INTERVALS,
  holdsModel,
  type RegistrySnapshot,
  type RunnerRecord,
} from './registry-snapshot.ts'

/**
 * What one attempt at a runner came to. Only the runner's own faults count against its circuit breaker:
 * `timeout` is the attempt's own budget running out (derived from the runner's observed latency), while
 * `deadline` is the caller's deadline running out first (issue #16: a caller's 2 ms deadline opened the breaker
 * for everyone), and `abandoned` an attempt dropped because another answered first (hedging) or the caller left.
 */
export type AttemptOutcome =
  | 'ok'
  | 'client_error'
  | 'overloaded'
  | 'server_error'
  | 'connect_error'
  | 'timeout'
  | 'bad_response'
  | 'deadline'
  | 'abandoned'

const BREAKER_FAILURES: ReadonlySet<AttemptOutcome> = new Set([
  'server_error',
  'connect_error',
  'timeout',
  'bad_response',
])

export interface RunnerView {
  breaker: BreakerState
  consecutive_failures: number
  outstanding: number
}

/** Model names remembered from registrations (signed by runners, so few); a bound all the same. */
const MAX_KNOWN_MODELS = 10_000
/** Expert names kept per model (every version's, added and replaced experts included). */
const MAX_EXPERTS_PER_MODEL = 256

export class RunnerPool {
  private cached: { snapshot: RegistrySnapshot; fetchedAt: number } | undefined
  /** When the fetch that will replace a stale `cached` began, while one runs (routingSnapshot). */
  refreshingSince: number | undefined
  private readonly breakers = new Map<string, CircuitBreaker>()
  private readonly outstanding = new Map<string, number>()
  /** Suspects (an attempt overdue), each until when (ms since epoch) at the latest. */
  private readonly suspects = new Map<string, number>()
  /** When each runner last answered an attempt (ms since epoch). */
  private readonly answeredAt = new Map<string, number>()
  private readonly models = new Set<string>()
  private readonly experts = new Map<string, Set<string>>()
  /** Attempt latencies seen from this isolate (attempt timeouts, hedge delays). */
  readonly latency = new LatencyTracker()
  readonly hedges: HedgeBudget

  constructor(
    private readonly options: {
      cacheMs: number
      breakerThreshold: number
      breakerCooldownMs: number
      hedgeBudgetPercent?: number
      random?: () => number
    },
  ) {
    this.hedges = new HedgeBudget(options.hedgeBudgetPercent ?? 0)
  }

  /**
   * Whether some runner has registered `model` (now or earlier in this isolate's life): only such names become
   * metric labels, never a name a caller made up.
   */
  knows(model: string): boolean {
    return this.models.has(model)
  }

  /**
   * Whether a runner has registered `expert` as one of `model`'s experts (a package's names, bounded per model):
   * only such names become the `expert` label of the per-expert routing counters.
   */
  knowsExpert(model: string, expert: string): boolean {
    return this.experts.get(model)?.has(expert) ?? false
  }

  /** The cached snapshot if fresh enough, else undefined (the caller fetches one and `adopt`s it). */
  fresh(now: number): RegistrySnapshot | undefined {
    const c = this.cached
    return c && now - c.fetchedAt <= this.options.cacheMs ? c.snapshot : undefined
  }

  /** The cached snapshot however old (undefined when there is none or it was invalidated). */
  stale(): RegistrySnapshot | undefined {
    return this.cached?.snapshot
  }

  adopt(snapshot: RegistrySnapshot, now: number): void {
    this.cached = { snapshot, fetchedAt: now }
    for (const r of snapshot.runners)
      for (const m of r.models) {
        if (this.models.size < MAX_KNOWN_MODELS) this.models.add(m.name)
        if (!this.models.has(m.name)) continue
        const known = this.experts.get(m.name) ?? new Set<string>()
        this.experts.set(m.name, known)
        for (const e of m.experts) if (known.size < MAX_EXPERTS_PER_MODEL) known.add(e)
      }
    // Forget runners that left: their breakers and counts would otherwise pile up.
    const ids = new Set(snapshot.runners.map((r) => r.runner_id))
    for (const id of this.breakers.keys()) if (!ids.has(id)) this.breakers.delete(id)
    for (const id of this.outstanding.keys()) if (!ids.has(id)) this.outstanding.delete(id)
    for (const id of this.suspects.keys()) if (!ids.has(id)) this.suspects.delete(id)
    for (const id of this.answeredAt.keys()) if (!ids.has(id)) this.answeredAt.delete(id)
  }

  invalidate(): void {
    this.cached = undefined
  }

  private breaker(runnerId: string): CircuitBreaker {
    let b = this.breakers.get(runnerId)
    if (!b) {
      b = new CircuitBreaker({
        threshold: this.options.breakerThreshold,
        cooldownMs: this.options.breakerCooldownMs,
      })
      this.breakers.set(runnerId, b)
    }
    return b
  }

  /** Live runners that hold `model` ready and are not draining (breakers not considered). */
  holders(snapshot: RegistrySnapshot, model: string, now: number): RunnerRecord[] {
    const cutoff = now - EXPIRY_INTERVALS * snapshot.heartbeat_interval_ms
    return snapshot.runners.filter((r) => r.last_seen >= cutoff && holdsModel(r, model))
  }

  /** Whether a live runner holds any model ready and this isolate's breaker lets traffic through. */
  anyReady(snapshot: RegistrySnapshot, now: number, model?: string): boolean {
    const cutoff = now - EXPIRY_INTERVALS * snapshot.heartbeat_interval_ms
    return snapshot.runners.some(
      (r) =>
        r.last_seen >= cutoff &&
        !r.draining &&
        this.breaker(r.runner_id).allows(now) &&
        r.models.some((m) => m.ready && (model === undefined || m.name === model)),
    )
  }

  /** Load per unit of capacity: the runner's reported queue and work, or our own in-flight count if higher. */
  private score(r: RunnerRecord): number {
    const reported = r.load.in_flight + r.load.queue_depth
    return Math.max(this.outstanding.get(r.runner_id) ?? 0, reported) / r.load.capacity
  }

  /** An attempt at `runnerId` passed its hedge point unanswered: a suspect until `until` at the latest. */
  overdue(runnerId: string, until: number): void {
    this.suspects.set(runnerId, Math.max(until, this.suspects.get(runnerId) ?? 0))
  }

  /** `runnerId` answered an attempt (any HTTP answer, however late): it is alive, no suspect. */
  answered(runnerId: string, now: number): void {
    this.suspects.delete(runnerId)
    this.answeredAt.set(runnerId, now)
  }

  /** Ms left of `runnerId`'s suspicion (0: none). */
  suspectFor(runnerId: string, now: number): number {
    const until = this.suspects.get(runnerId)
    if (until === undefined) return 0
    if (until > now) return until - now
    this.suspects.delete(runnerId)
    return 0
  }

  /**
   * Power of two choices among `holders` not yet tried whose breaker allows traffic and that are no suspects
   * (overdue, see above); runners listing the requested variant are preferred (if none does, any holder decides:
   * versions may skew). When every such holder is a suspect, the request still goes to the one that answered
   * last (a busy runner just past its p99 beside a frozen one). Hedges too: a hedge sent to a frozen runner
   * costs one request there, a hedge refused would leave its request waiting for its late attempt's whole
   * budget when that attempt is the frozen one's.
   */
  pick(
    holders: readonly RunnerRecord[],
    model: string,
    variant: string | undefined,
    exclude: readonly string[],
    now: number,
  ): RunnerRecord | undefined {
    const open = holders.filter(
      (r) => !exclude.includes(r.runner_id) && this.breaker(r.runner_id).allows(now),
    )
    const prompt = open.filter((r) => this.suspectFor(r.runner_id, now) === 0)
    const candidates = prompt.length > 0 ? prompt : this.lastAnswered(open)
    const withVariant =
      variant === undefined
        ? []
        : candidates.filter((r) =>
            r.models.some((m) => m.name === model && m.variants.includes(variant)),
          )
    return pickPowerOfTwo(
      withVariant.length > 0 ? withVariant : candidates,
      (r) => this.score(r),
      this.options.random,
    )
  }

  /** Among suspects, the one that answered last (all of them when none ever has). */
  private lastAnswered(suspects: RunnerRecord[]): RunnerRecord[] {
    let best: RunnerRecord | undefined
    let at = 0
    for (const r of suspects) {
      const t = this.answeredAt.get(r.runner_id) ?? 0
      if (t > at) {
        best = r
        at = t
      }
    }
    return best ? [best] : suspects
  }

  /** A request is sent to `runnerId`. */
  dispatch(runnerId: string, now: number): void {
    this.breaker(runnerId).onDispatch(now)
    this.outstanding.set(runnerId, (this.outstanding.get(runnerId) ?? 0) + 1)
  }

  /** The attempt at `runnerId` ended; returns true when this outcome opened its breaker. */
  settle(runnerId: string, outcome: AttemptOutcome, now: number): boolean {
    const left = (this.outstanding.get(runnerId) ?? 0) - 1
    if (left > 0) this.outstanding.set(runnerId, left)
    else this.outstanding.delete(runnerId)
    const b = this.breaker(runnerId)
    if (BREAKER_FAILURES.has(outcome)) {
      const wasOpen = b.state(now) === 'open'
      b.onFailure(now)
      // A runner that drops connections may have left: look again before the next pick.
      if (outcome === 'connect_error') this.invalidate()
      return !wasOpen && b.state(now) === 'open'
    }
    if (outcome === 'ok' || outcome === 'client_error') b.onSuccess()
    return false
  }

  view(runnerId: string, now: number): RunnerView {
    const b = this.breakers.get(runnerId)
    return {
      breaker: b?.state(now) ?? 'closed',
      consecutive_failures: b?.consecutiveFailures ?? 0,
      outstanding: this.outstanding.get(runnerId) ?? 0,
    }
  }
}

let current: { key: string; pool: RunnerPool } | undefined

/**
 * The isolate's pool. Keyed by the settings it was built with (not by object identity), so a redeploy with new
 * settings starts a fresh pool and nothing else does.
 */
export function runnerPool(config: GatewayConfig): RunnerPool {
  const key = `${config.ROUTING_CACHE_MS}/${config.BREAKER_FAILURE_THRESHOLD}/${config.BREAKER_COOLDOWN_MS}/${config.HEDGE_BUDGET_PERCENT}`
  if (current?.key !== key)
    current = {
      key,
      pool: new RunnerPool({
        cacheMs: config.ROUTING_CACHE_MS,
        breakerThreshold: config.BREAKER_FAILURE_THRESHOLD,
        breakerCooldownMs: config.BREAKER_COOLDOWN_MS,
        hedgeBudgetPercent: config.HEDGE_BUDGET_PERCENT,
      }),
    }
  return current.pool
}

/**
 * How long requests keep routing on the stale snapshot while another request's fetch of the next one runs;
 * past it (that fetch hung), the next request fetches too.
 */
const REFRESH_GRACE_MS = 1_000

/**
 * The pool's snapshot if fresh, else a new one from the registry. When the cache goes stale under load, one
 * request fetches and the others route on the stale snapshot meanwhile (at most ROUTING_CACHE_MS +
 * REFRESH_GRACE_MS old): at c = 32 every request used to fetch, a registry round trip each, until the first
 * answer was adopted (issue #17). They cannot simply await that request's fetch: a promise shared across
 * requests is not allowed to carry I/O in Workers. With no snapshot at all (a new isolate, or invalidated after a
 * membership call or a connection failure) every request fetches its own, as before.
 */
export async function routingSnapshot(
  pool: RunnerPool,
  fetchSnapshot: () => Promise<RegistrySnapshot>,
): Promise<RegistrySnapshot> {
  const now = Date.now()
  const fresh = pool.fresh(now)
  if (fresh) return fresh
  const since = pool.refreshingSince
  const stale = pool.stale()
  if (stale && since !== undefined && now - since < REFRESH_GRACE_MS) return stale
  pool.refreshingSince = now
  try {
    const snapshot = await fetchSnapshot()
    pool.adopt(snapshot, Date.now())
    return snapshot
  } finally {
    if (pool.refreshingSince === now) pool.refreshingSince = undefined
  }
}
