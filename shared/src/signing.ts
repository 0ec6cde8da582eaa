/**
 * Request signing between the gateway and the runners (both directions: gateway → runner for inference,
 * runner → gateway for registration). HMAC-SHA256 over `METHOD\nPATH\nTIMESTAMP\nsha256(body)`, with a
 * bounded clock skew so that a captured request cannot be replayed later. WebCrypto only, so the same code
 * runs in workerd and in Node.
 * @module
 */

export const SIGNATURE_HEADER = 'x-twinserve-signature'
export const TIMESTAMP_HEADER = 'x-twinserve-timestamp'
/** How far (seconds) a signed timestamp may be from the verifier's clock. */
export const DEFAULT_MAX_SKEW_S = 300

const encoder = new TextEncoder()

function toHex(buf: ArrayBuffer): string {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('')
}

export async function sha256Hex(body: string | Uint8Array<ArrayBuffer>): Promise<string> {
  const bytes = typeof body === 'string' ? encoder.encode(body) : body
  return toHex(await crypto.subtle.digest('SHA-256', bytes))
}

async function hmacKey(secret: string) {
  return crypto.subtle.importKey(
    'raw',
    encoder.encode(secret),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign', 'verify'],
  )
}

function canonical(method: string, path: string, timestamp: string, bodyHash: string): string {
  return `${method.toUpperCase()}\n${path}\n${timestamp}\n${bodyHash}`
}

export interface SignInput {
  method: string
  /** Path plus query, e.g. `/v2/models/demo/infer`. */
  path: string
  body: string | Uint8Array<ArrayBuffer>
  /** Unix seconds; defaults to now. */
  timestamp?: number
}

/** Returns the two headers to attach to a request. */
export async function signRequest(
  secret: string,
  input: SignInput,
): Promise<Record<string, string>> {
  const ts = String(input.timestamp ?? Math.floor(Date.now() / 1000))
  const msg = canonical(input.method, input.path, ts, await sha256Hex(input.body))
  const sig = await crypto.subtle.sign('HMAC', await hmacKey(secret), encoder.encode(msg))
  return { [TIMESTAMP_HEADER]: ts, [SIGNATURE_HEADER]: toHex(sig) }
}

export type VerifyResult = { ok: true } | { ok: false; reason: string }

export interface VerifyInput extends Omit<SignInput, 'timestamp'> {
  timestampHeader: string | null | undefined
  signatureHeader: string | null | undefined
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

/** Constant-time verification (crypto.subtle.verify) with a skew check; never throws on bad input. */
export async function verifyRequest(secret: string, input: VerifyInput): Promise<VerifyResult> {
  const { timestampHeader, signatureHeader } = input
  if (!timestampHeader || !signatureHeader)
    return { ok: false, reason: 'missing signature headers' }
  if (!/^\d{1,12}$/.test(timestampHeader)) return { ok: false, reason: 'malformed timestamp' }
  const now = input.now ?? Math.floor(Date.now() / 1000)
  const skew = Math.abs(now - Number(timestampHeader))
  if (skew > (input.maxSkewS ?? DEFAULT_MAX_SKEW_S))
    return { ok: false, reason: 'signature expired' }
  const sig = fromHex(signatureHeader)
  if (sig?.length !== 32) return { ok: false, reason: 'malformed signature' }
  const msg = canonical(input.method, input.path, timestampHeader, await sha256Hex(input.body))
  const ok = await crypto.subtle.verify('HMAC', await hmacKey(secret), sig, encoder.encode(msg))
  return ok ? { ok: true } : { ok: false, reason: 'bad signature' }
}
