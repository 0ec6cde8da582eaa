/**
 * A small per-isolate cache with expiry and a size bound (oldest entry out first), for lookups that are read
 * on every request and change rarely.
 *
 * When an entry expires under load, one request refreshes it and the others keep the expired value meanwhile
 * (for at most REFRESH_GRACE_MS): at c = 32 every request used to miss together and each ran the lookup (a D1
 * query) until the first answer was stored (issue #17). They cannot await that one request's lookup instead: a
 * promise shared across requests may not carry I/O in Workers.
 * @module
 */

/** How long others use an expired entry while one request's refresh runs; past it, the next one refreshes too. */
export const REFRESH_GRACE_MS = 1_000

export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; expiresAt: number }>()
  /** Keys whose refresh is running, and since when. */
  private readonly refreshing = new Map<string, number>()

  constructor(private readonly maxEntries: number) {}

  get(key: string, now: number): V | undefined {
    const e = this.entries.get(key)
    return e && e.expiresAt > now ? e.value : undefined
  }

  /**
   * The fresh value; or, while another request refreshes the expired one, the expired value; or undefined:
   * then the caller looks the value up, `set`s it and calls `refreshed` (in a finally).
   */
  getOrClaim(key: string, now: number): V | undefined {
    const e = this.entries.get(key)
    if (!e) return undefined
    if (e.expiresAt > now) return e.value
    const since = this.refreshing.get(key)
    if (since !== undefined && now - since < REFRESH_GRACE_MS) return e.value
    this.refreshing.set(key, now)
    return undefined
  }

  /** Ends the refresh `getOrClaim` handed to the caller (whether or not it stored a value). */
  refreshed(key: string): void {
    this.refreshing.delete(key)
  }

  set(key: string, value: V, expiresAt: number): void {
    this.entries.delete(key)
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next()
      if (!oldest.done) this.entries.delete(oldest.value)
    }
    this.entries.set(key, { value, expiresAt })
  }

  /** Forgets `key` (a lookup that no longer finds it must not serve the old value). */
  delete(key: string): void {
    this.entries.delete(key)
  }

  clear(): void {
    this.entries.clear()
    this.refreshing.clear()
  }
}
