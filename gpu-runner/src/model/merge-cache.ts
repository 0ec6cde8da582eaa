/**
 * A bounded LRU of materialised merges, keyed by the canonical recipe (lorax's `lru_cache` on the merge
 * parameters, mergekit's hashable tasks). Bounded by entry count and by bytes; an entry larger than the byte bound
 * is computed, used, and not kept. Concurrent misses on one key share a single computation, so a burst of
 * identical recipes merges once. Entries have an owner (the tenant whose request created them); with
 * `maxEntriesPerOwner`, an owner at its share makes room by losing its own least recent entry, not someone
 * else's (issue #16: one tenant cycling recipes kept the cache cold for everyone).
 * @module
 */
import { createHash } from 'node:crypto'

/** JSON with object keys sorted at every level: the same recipe always gives the same string. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}

/** sha256 of the canonical JSON of a recipe. */
export function recipeKey(recipe: unknown): string {
  return createHash('sha256').update(canonicalJson(recipe)).digest('hex')
}

export interface MergeCacheStats {
  hits: number
  misses: number
  evictions: number
  entries: number
  bytes: number
}

export interface MergeCacheOptions {
  maxEntries: number
  maxBytes: number
  /** Entries one owner may hold (default: no bound but maxEntries). */
  maxEntriesPerOwner?: number
  /** Called on every lookup, for metrics. */
  onLookup?: (hit: boolean) => void
}

export class MergeCache<V> {
  private readonly entries = new Map<string, { value: V; bytes: number; owner: string }>()
  private readonly pending = new Map<string, Promise<V>>()
  private bytes = 0
  private readonly stats = { hits: 0, misses: 0, evictions: 0 }

  constructor(private readonly opts: MergeCacheOptions) {}

  /**
   * The cached value for `key`, or `compute()`'s (then cached if it fits). `sizeOf` gives a value's bytes.
   * A failed computation is not cached: the next request retries. `owner` is charged the entry.
   */
  async get(
    key: string,
    compute: () => Promise<V>,
    sizeOf: (v: V) => number,
    owner = '',
  ): Promise<V> {
    const hit = this.entries.get(key)
    if (hit) {
      // Map iteration order is insertion order: re-inserting marks the entry most recently used.
      this.entries.delete(key)
      this.entries.set(key, hit)
      this.stats.hits++
      this.opts.onLookup?.(true)
      return hit.value
    }
    const inflight = this.pending.get(key)
    if (inflight) {
      this.stats.hits++
      this.opts.onLookup?.(true)
      return inflight
    }
    this.stats.misses++
    this.opts.onLookup?.(false)
    const promise = compute().then((value) => {
      this.insert(key, value, sizeOf(value), owner)
      return value
    })
    this.pending.set(key, promise)
    try {
      return await promise
    } finally {
      this.pending.delete(key)
    }
  }

  has(key: string): boolean {
    return this.entries.has(key)
  }

  /** Cached, or being computed now: a request for it causes no new computation. */
  covers(key: string): boolean {
    return this.entries.has(key) || this.pending.has(key)
  }

  snapshot(): MergeCacheStats {
    return { ...this.stats, entries: this.entries.size, bytes: this.bytes }
  }

  private insert(key: string, value: V, bytes: number, owner: string): void {
    if (this.opts.maxEntries === 0 || bytes > this.opts.maxBytes) return
    const perOwner = this.opts.maxEntriesPerOwner
    if (perOwner !== undefined) {
      const own = [...this.entries].filter(([, e]) => e.owner === owner)
      for (const [k] of own.slice(0, Math.max(0, own.length - perOwner + 1))) this.evict(k)
    }
    while (
      this.entries.size >= this.opts.maxEntries ||
      (this.entries.size > 0 && this.bytes + bytes > this.opts.maxBytes)
    ) {
      const oldest = this.entries.keys().next()
      if (oldest.done) break
      this.evict(oldest.value)
    }
    this.entries.set(key, { value, bytes, owner })
    this.bytes += bytes
  }

  private evict(key: string): void {
    const evicted = this.entries.get(key)
    if (!evicted) return
    this.entries.delete(key)
    this.bytes -= evicted.bytes
    this.stats.evictions++
  }
}
