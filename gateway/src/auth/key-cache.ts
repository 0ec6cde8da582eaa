/**
 * API key lookups cached per isolate for AUTH_CACHE_TTL_MS: D1 is one region away from most of the edge, and
 * keys change rarely. The price: a key revoked through another isolate keeps working there for up to the TTL
 * (the isolate that revokes forgets at once). Unknown keys are not cached, so a new key works immediately.
 * @module
 */

import { TtlCache } from '../util/ttl-cache.ts'
import { findKeyByHash, type KeyLookup } from './api-key-store.ts'

const cache = new TtlCache<KeyLookup>(10_000)

export async function lookupKey(db: D1Database, hash: string, ttlMs: number): Promise<KeyLookup> {
  const now = Date.now()
  if (ttlMs > 0) {
    const hit = cache.get(hash, now)
    if (hit) return hit
  }
  const found = await findKeyByHash(db, hash)
  if (found.found && ttlMs > 0) cache.set(hash, found, now + ttlMs)
  return found
}

export function forgetCachedKeys(): void {
  cache.clear()
}
