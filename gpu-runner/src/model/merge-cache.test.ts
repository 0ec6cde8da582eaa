import { describe, expect, it } from 'vitest'
import { canonicalJson, MergeCache, recipeKey } from './merge-cache.ts'

describe('canonical recipe keys', () => {
  it('ignore key order and undefined fields, and differ on any value', () => {
    const a = { method: 'ties', density: 0.5, experts: { b: { weight: 1 }, a: { weight: 2 } } }
    const b = {
      experts: { a: { weight: 2 }, b: { weight: 1 } },
      density: 0.5,
      method: 'ties',
      seed: undefined,
    }
    expect(canonicalJson(a)).toBe(canonicalJson(b))
    expect(recipeKey(a)).toBe(recipeKey(b))
    expect(recipeKey({ ...a, density: 0.6 })).not.toBe(recipeKey(a))
    expect(recipeKey({ ...a, experts: { a: { weight: 2 }, b: { weight: 1.0001 } } })).not.toBe(
      recipeKey(a),
    )
  })
})

describe('MergeCache', () => {
  const size = (v: Uint8Array) => v.byteLength

  it('computes once per key, counts hits and misses, and evicts the least recently used', async () => {
    const lookups: boolean[] = []
    const cache = new MergeCache<Uint8Array>({
      maxEntries: 2,
      maxBytes: 1000,
      onLookup: (hit) => lookups.push(hit),
    })
    let computed = 0
    const make = (n: number) => async () => {
      computed++
      return new Uint8Array(n)
    }
    await cache.get('a', make(10), size)
    await cache.get('b', make(10), size)
    await cache.get('a', make(10), size) // a is now most recent
    await cache.get('c', make(10), size) // evicts b
    expect(cache.has('a')).toBe(true)
    expect(cache.has('b')).toBe(false)
    expect(cache.has('c')).toBe(true)
    expect(computed).toBe(3)
    expect(lookups).toEqual([false, false, true, false])
    expect(cache.snapshot()).toEqual({ hits: 1, misses: 3, evictions: 1, entries: 2, bytes: 20 })
  })

  it('bounds bytes, and does not keep an entry larger than the bound', async () => {
    const cache = new MergeCache<Uint8Array>({ maxEntries: 10, maxBytes: 100 })
    await cache.get('a', async () => new Uint8Array(60), size)
    await cache.get('b', async () => new Uint8Array(60), size) // a goes: 120 > 100
    expect(cache.has('a')).toBe(false)
    const big = await cache.get('big', async () => new Uint8Array(500), size)
    expect(big.byteLength).toBe(500)
    expect(cache.has('big')).toBe(false)
    expect(cache.has('b')).toBe(true)
    expect(cache.snapshot().bytes).toBe(60)
  })

  it('shares one computation between concurrent misses, and does not cache failures', async () => {
    const cache = new MergeCache<Uint8Array>({ maxEntries: 4, maxBytes: 1000 })
    let computed = 0
    const slow = async () => {
      computed++
      await new Promise((r) => setTimeout(r, 10))
      return new Uint8Array(4)
    }
    const [x, y] = await Promise.all([cache.get('k', slow, size), cache.get('k', slow, size)])
    expect(x).toBe(y)
    expect(computed).toBe(1)
    await expect(
      cache.get('bad', async () => Promise.reject(new Error('merge failed')), size),
    ).rejects.toThrow('merge failed')
    expect(cache.has('bad')).toBe(false)
    expect(await cache.get('bad', async () => new Uint8Array(1), size)).toHaveLength(1)
  })

  it('with maxEntries 0 caches nothing', async () => {
    const cache = new MergeCache<Uint8Array>({ maxEntries: 0, maxBytes: 1000 })
    await cache.get('a', async () => new Uint8Array(1), size)
    expect(cache.has('a')).toBe(false)
  })

  // Issue #16, case 8: a tenant cycling recipes pushed everyone else's merges out of the cache.
  it('an owner at its share loses its own least recent entry, not anyone else’s', async () => {
    const cache = new MergeCache<Uint8Array>({
      maxEntries: 4,
      maxBytes: 1000,
      maxEntriesPerOwner: 2,
    })
    const make = () => async () => new Uint8Array(1)
    await cache.get('b1', make(), size, 'tenant-b')
    await cache.get('b2', make(), size, 'tenant-b')
    for (let i = 0; i < 20; i++) await cache.get(`a${i}`, make(), size, 'tenant-a')
    expect(cache.has('b1')).toBe(true)
    expect(cache.has('b2')).toBe(true)
    expect(cache.has('a19')).toBe(true)
    expect(cache.has('a18')).toBe(true)
    expect(cache.has('a17')).toBe(false)
    expect(cache.snapshot().entries).toBe(4)
  })

  it('covers a key while it is being computed', async () => {
    const cache = new MergeCache<Uint8Array>({ maxEntries: 4, maxBytes: 1000 })
    let release: () => void = () => undefined
    const gate = new Promise<void>((r) => {
      release = r
    })
    const pending = cache.get('k', () => gate.then(() => new Uint8Array(1)), size)
    expect(cache.covers('k')).toBe(true)
    expect(cache.has('k')).toBe(false)
    release()
    await pending
    expect(cache.covers('k')).toBe(true)
    expect(cache.covers('other')).toBe(false)
  })
})
