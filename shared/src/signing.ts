/**
 * Request signing between the gateway and the runners (both directions: gateway → runner for inference,
 * runner → gateway for registration). WebCrypto only, so the same code runs in workerd and in Node.
 *
 * The signature is HMAC-SHA256 over
 *
 *   TWINSERVE-HMAC-SHA256-2 \n METHOD \n PATH \n TIMESTAMP \n NONCE \n TENANT \n sha256(body)
 *
 * where sha256(body) travels in its own header. Every part of that text is in the headers, so a verifier can
 * check the signature, its freshness (bounded clock skew) and the announced size BEFORE it reads a byte of the
 * body, then stream the body into a hash and compare (issue #16: an unsigned 30 MiB POST used to be read to the
 * end first). The nonce makes every signed request unique, so the runner can refuse a replay within the window
 * (it keeps the nonces it has seen for as long as a timestamp stays fresh). The tenant is the gateway's word
 * on whose request this is: signed, so a runner may charge per-tenant quotas on it.
 * @module
 */

export const SIGNATURE_HEADER = 'x-twinserve-signature'
export const TIMESTAMP_HEADER = 'x-twinserve-timestamp'
export const NONCE_HEADER = 'x-twinserve-nonce'
export const CONTENT_SHA256_HEADER = 'x-twinserve-content-sha256'
export const TENANT_HEADER = 'x-twinserve-tenant'
/** How far (seconds) a signed timestamp may be from the verifier's clock. */
export const DEFAULT_MAX_SKEW_S = 300

const SCHEME = 'TWINSERVE-HMAC-SHA256-2'
const NONCE_PATTERN = /^[0-9a-f]{16,64}$/
/** Tenants are TenantSchema names (api-keys.ts); anything else could not have come from the gateway. */
const TENANT_PATTERN = /^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$/
const HASH_PATTERN = /^[0-9a-f]{64}$/

import { toHex } from './hex.ts'

const encoder = new TextEncoder()

export async function sha256Hex(body: string | Uint8Array<ArrayBuffer>): Promise<string> {
  const bytes = typeof body === 'string' ? encoder.encode(body) : body
  return toHex(await crypto.subtle.digest('SHA-256', bytes))
}

/**
 * The HMAC key for `secret`, imported once: importKey per signed request was a tenth of the gateway's signing
 * cost (issue #17). One entry, since a process signs with one secret (a new one replaces it).
 */
type HmacKey = Awaited<ReturnType<typeof crypto.subtle.importKey>>
let hmacKeyCache: { secret: string; key: Promise<HmacKey> } | undefined

function hmacKey(secret: string): Promise<HmacKey> {
  if (hmacKeyCache?.secret !== secret) {
    const key = crypto.subtle.importKey(
      'raw',
      encoder.encode(secret),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign', 'verify'],
    )
    // A failed import is not kept: the next call tries again.
    key.catch(() => {
      if (hmacKeyCache?.key === key) hmacKeyCache = undefined
    })
    hmacKeyCache = { secret, key }
  }
  return hmacKeyCache.key
}

interface Claims {
  /** Unix seconds, as sent. */
  timestamp: string
  nonce: string
  /** '' when the request is not on behalf of a tenant (runner → gateway). */
  tenant: string
  bodySha256: string
}

function canonical(method: string, path: string, c: Claims): string {
  return [SCHEME, method.toUpperCase(), path, c.timestamp, c.nonce, c.tenant, c.bodySha256].join(
    '\n',
  )
}

/** 64 random bits drawn once per process (isolate), the first half of every nonce it makes. */
let noncePrefix: string | undefined
let nonceCount = 0n

/**
 * A nonce never used before (128 bits, hex): 64 random bits drawn once per process, then a 64-bit counter. The
 * verifier needs nonces unique, not unpredictable (the signature covers them), and a random draw per signed
 * request was the largest single frame of the gateway's CPU profile (issue #17).
 */
export function newNonce(): string {
  noncePrefix ??= toHex(crypto.getRandomValues(new Uint8Array(8)))
  nonceCount = (nonceCount + 1n) & 0xffff_ffff_ffff_ffffn
  return noncePrefix + nonceCount.toString(16).padStart(16, '0')
}

export interface SignInput {
  method: string
  /** Path plus query, e.g. `/v2/models/demo/infer`. */
  path: string
  body: string | Uint8Array<ArrayBuffer>
  /** Unix seconds; defaults to now. */
  timestamp?: number
  /** Defaults to a fresh random one; tests pass their own to replay. */
  nonce?: string
  /** The tenant the request is made for (gateway → runner); omitted for runner → gateway calls. */
  tenant?: string
}

/**
 * The headers to attach to a request: timestamp, nonce, body hash, tenant (when given) and the signature.
 * @throws Error on a nonce or tenant the verifier would refuse (a programming error, not a caller's)
 */
export async function signRequest(
  secret: string,
  input: SignInput,
): Promise<Record<string, string>> {
  const claims: Claims = {
    timestamp: String(input.timestamp ?? Math.floor(Date.now() / 1000)),
    nonce: input.nonce ?? newNonce(),
    tenant: input.tenant ?? '',
    bodySha256: await sha256Hex(input.body),
  }
  if (!NONCE_PATTERN.test(claims.nonce)) throw new Error('signRequest: malformed nonce')
  if (!TENANT_PATTERN.test(claims.tenant)) throw new Error('signRequest: malformed tenant')
  const msg = canonical(input.method, input.path, claims)
  const sig = await crypto.subtle.sign('HMAC', await hmacKey(secret), encoder.encode(msg))
  return {
    [TIMESTAMP_HEADER]: claims.timestamp,
    [NONCE_HEADER]: claims.nonce,
    [CONTENT_SHA256_HEADER]: claims.bodySha256,
    ...(claims.tenant ? { [TENANT_HEADER]: claims.tenant } : {}),
    [SIGNATURE_HEADER]: toHex(sig),
  }
}

/** Headers as a `Headers` object, or as Node's `IncomingHttpHeaders` (lower-case names). */
export type HeaderSource = Headers | Readonly<Record<string, string | string[] | undefined>>

function headerOf(h: HeaderSource, name: string): string | undefined {
  if (h instanceof Headers) return h.get(name) ?? undefined
  const v = h[name]
  return Array.isArray(v) ? v[0] : v
}

/** What a verified signature vouches for. */
export interface SignedClaims {
  /** Unix seconds. */
  timestamp: number
  nonce: string
  tenant: string
  /** hex sha256 the body must hash to. */
  bodySha256: string
}

export type HeaderVerdict = { ok: true; claims: SignedClaims } | { ok: false; reason: string }
export type VerifyResult = { ok: true; claims: SignedClaims } | { ok: false; reason: string }

export interface VerifyHeadersInput {
  method: string
  /** Path plus query, as received. */
  path: string
  headers: HeaderSource
  /** Unix seconds; defaults to now. */
  now?: number
  maxSkewS?: number
}

function fromHex(hex: string): Uint8Array<ArrayBuffer> | undefined {
  if (hex.length % 2 !== 0 || !/^[0-9a-f]*$/i.test(hex)) return undefined
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16)
  return out
}

/**
 * The first half of verification, from the headers alone (no body read yet): every signed header present and
 * well-formed, the timestamp fresh, the HMAC right (constant time, crypto.subtle.verify). The caller then hashes
 * the body it reads and compares with `claims.bodySha256` (bodyMatches). Never throws on bad input.
 */
export async function verifySignedHeaders(
  secret: string,
  input: VerifyHeadersInput,
): Promise<HeaderVerdict> {
  const h = input.headers
  const timestamp = headerOf(h, TIMESTAMP_HEADER)
  const signature = headerOf(h, SIGNATURE_HEADER)
  const nonce = headerOf(h, NONCE_HEADER)
  const bodySha256 = headerOf(h, CONTENT_SHA256_HEADER)
  const tenant = headerOf(h, TENANT_HEADER) ?? ''
  if (!timestamp || !signature || !nonce || !bodySha256)
    return { ok: false, reason: 'missing signature headers' }
  if (!/^\d{1,12}$/.test(timestamp)) return { ok: false, reason: 'malformed timestamp' }
  const now = input.now ?? Math.floor(Date.now() / 1000)
  if (Math.abs(now - Number(timestamp)) > (input.maxSkewS ?? DEFAULT_MAX_SKEW_S))
    return { ok: false, reason: 'signature expired' }
  if (!NONCE_PATTERN.test(nonce)) return { ok: false, reason: 'malformed nonce' }
  if (!HASH_PATTERN.test(bodySha256)) return { ok: false, reason: 'malformed content hash' }
  if (!TENANT_PATTERN.test(tenant)) return { ok: false, reason: 'malformed tenant' }
  const sig = fromHex(signature)
  if (sig?.length !== 32) return { ok: false, reason: 'malformed signature' }
  const claims: Claims = { timestamp, nonce, tenant, bodySha256 }
  const msg = canonical(input.method, input.path, claims)
  const ok = await crypto.subtle.verify('HMAC', await hmacKey(secret), sig, encoder.encode(msg))
  if (!ok) return { ok: false, reason: 'bad signature' }
  return { ok: true, claims: { ...claims, timestamp: Number(timestamp) } }
}

/** Whether the body that arrived is the one that was signed (its hex sha256 equals the signed hash). */
export function bodyMatches(claims: SignedClaims, bodySha256Hex: string): boolean {
  return claims.bodySha256 === bodySha256Hex.toLowerCase()
}

export interface VerifyInput extends VerifyHeadersInput {
  body: string | Uint8Array<ArrayBuffer>
}

/** Both halves at once, for callers that hold the (small) body already. Never throws on bad input. */
export async function verifyRequest(secret: string, input: VerifyInput): Promise<VerifyResult> {
  const verdict = await verifySignedHeaders(secret, input)
  if (!verdict.ok) return verdict
  if (!bodyMatches(verdict.claims, await sha256Hex(input.body)))
    return { ok: false, reason: 'body does not match its signed hash' }
  return verdict
}
