/**
 * A small per-isolate cache with expiry and a size bound (oldest entry out first), for lookups that are read
 * on every request and change rarely.
 * @module
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; expiresAt: number }>()

  constructor(private readonly maxEntries: number) {}

  get(key: string, now: number): V | undefined {
    const e = this.entries.get(key)
    if (!e) return undefined
    if (e.expiresAt <= now) {
      this.entries.delete(key)
      return undefined
    }
    return e.value
  }

  set(key: string, value: V, expiresAt: number): void {
    this.entries.delete(key)
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next()
      if (!oldest.done) this.entries.delete(oldest.value)
    }
    this.entries.set(key, { value, expiresAt })
  }

  clear(): void {
    this.entries.clear()
  }
}
