/**
 * Recent attempt latencies, per model and request class (body size, within a factor of 4; per-request merges
 * apart), as one isolate sees them. They give each attempt at a runner its own timeout and hedge delay (issue
 * #16: a frozen runner held its requests for the caller's whole deadline, since nothing told the gateway how long
 * an answer normally takes). Bounded: a ring of the last WINDOW samples per class, classes only for models a
 * runner answered.
 * @module
 */

/** Samples kept per class: enough for a p99 that moves with the load, few enough to sort per request. */
const WINDOW = 256
/** Below this many samples a class has no p99 yet (the configured minimum timeout applies, no hedging). */
export const MIN_SAMPLES = 20

/** Bodies within a factor of 4 share a class: a 10 MB request is not timed by 2 KB ones. */
export function sizeClass(bytes: number): number {
  return Math.floor(Math.log2(Math.max(1, bytes)) / 2)
}

interface Ring {
  values: Float64Array
  count: number
  next: number
  sorted: number[] | undefined
}

export class LatencyTracker {
  private readonly rings = new Map<string, Ring>()

  private static key(model: string, bytes: number, merge: boolean): string {
    return `${model}|${merge ? 'merge' : 'plain'}|${sizeClass(bytes)}`
  }

  /** An attempt that a runner answered (any answer the caller gets) took `ms`. */
  record(model: string, bytes: number, merge: boolean, ms: number): void {
    const key = LatencyTracker.key(model, bytes, merge)
    let ring = this.rings.get(key)
    if (!ring) {
      ring = { values: new Float64Array(WINDOW), count: 0, next: 0, sorted: undefined }
      this.rings.set(key, ring)
    }
    ring.values[ring.next] = ms
    ring.next = (ring.next + 1) % WINDOW
    ring.count = Math.min(WINDOW, ring.count + 1)
    ring.sorted = undefined
  }

  /** The class's 99th percentile (ms), or undefined with fewer than MIN_SAMPLES samples. */
  p99(model: string, bytes: number, merge: boolean): number | undefined {
    const ring = this.rings.get(LatencyTracker.key(model, bytes, merge))
    if (!ring || ring.count < MIN_SAMPLES) return undefined
    ring.sorted ??= Array.from(ring.values.subarray(0, ring.count)).sort((a, b) => a - b)
    return ring.sorted[Math.min(ring.count - 1, Math.ceil(0.99 * ring.count) - 1)]
  }

  /** Forgets a model's samples (its runners were replaced, or it is gone). */
  forget(model: string): void {
    for (const key of this.rings.keys()) if (key.startsWith(`${model}|`)) this.rings.delete(key)
  }
}
