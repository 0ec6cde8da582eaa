/**
 * "At most once per interval per key", per isolate, with a bound on the keys it remembers. A key whose last run
 * is older than the interval carries no information (it may run again anyway), so those are dropped first; past
 * `maxKeys` live ones the oldest goes, which at worst lets that key run once more early. Module state lives as
 * long as the isolate, so a map keyed by ids (experiments, models) must not grow with every id ever seen.
 * @module
 */
export class Throttle {
  /** Last run per key, oldest first (a key moves to the end when it runs again). */
  private readonly last = new Map<string, number>()

  constructor(private readonly maxKeys: number) {}

  /** Whether `key` may run now (it is then counted as run at `now`). */
  tryRun(key: string, now: number, intervalMs: number): boolean {
    const at = this.last.get(key)
    if (at !== undefined && now - at < intervalMs) return false
    this.last.delete(key)
    if (this.last.size >= this.maxKeys) this.evict(now, intervalMs)
    this.last.set(key, now)
    return true
  }

  get size(): number {
    return this.last.size
  }

  private evict(now: number, intervalMs: number): void {
    for (const [k, at] of this.last) if (now - at >= intervalMs) this.last.delete(k)
    while (this.last.size >= this.maxKeys) {
      const oldest = this.last.keys().next()
      if (oldest.done) break
      this.last.delete(oldest.value)
    }
  }
}
