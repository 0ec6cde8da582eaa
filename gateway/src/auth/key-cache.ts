/**
 * API key lookups cached per isolate for AUTH_CACHE_TTL_MS: D1 is one region away from most of the edge, and
 * keys change rarely. The price: a key revoked through another isolate keeps working there for up to the TTL
 * (the isolate that revokes forgets at once), plus, under concurrent load, the one round trip that refreshes it
 * (util/ttl-cache.ts: the others keep the cached answer meanwhile rather than each querying D1). Unknown keys
 * are not cached, so a new key works immediately.
 * @module
 */

import { TtlCache } from '../util/ttl-cache.ts'
import { findKeyByHash, type KeyLookup } from './api-key-store.ts'

const cache = new TtlCache<KeyLookup>(10_000)

export async function lookupKey(db: D1Database, hash: string, ttlMs: number): Promise<KeyLookup> {
  const now = Date.now()
  if (ttlMs <= 0) return findKeyByHash(db, hash)
  const hit = cache.getOrClaim(hash, now)
  if (hit) return hit
  try {
    const found = await findKeyByHash(db, hash)
    if (found.found) cache.set(hash, found, now + ttlMs)
    else cache.delete(hash)
    return found
  } finally {
    cache.refreshed(hash)
  }
}

export function forgetCachedKeys(): void {
  cache.clear()
}
