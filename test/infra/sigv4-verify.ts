/**
 * Server-side check of AWS Signature Version 4 (header form), written from AWS's specification for the object
 * store stand-in, so that the runner image's pull (signing with aws4fetch) is verified by independent code. The
 * verifier itself is checked against AWS's published S3 example (sigv4-verify.test.ts).
 * @see https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
 * @module
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'

export interface SignedRequest {
  method: string
  /** Path as sent on the wire (already percent-encoded), without the query. */
  path: string
  /** Raw query string without '?'. */
  query: string
  /** Header names lowercase. */
  headers: Readonly<Record<string, string | undefined>>
  body?: Uint8Array
}

export interface Credentials {
  accessKeyId: string
  secretAccessKey: string
}

export type VerifyResult =
  | { ok: true; accessKeyId: string }
  | {
      ok: false
      code: 'AccessDenied' | 'InvalidAccessKeyId' | 'SignatureDoesNotMatch' | 'RequestTimeTooSkewed'
      message: string
    }

const sha256hex = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex')
const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest()

const AUTH =
  /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/

/** RFC 3986 encoding as SigV4 wants it (unreserved characters kept). */
const uriEncode = (s: string) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)

function canonicalQuery(query: string): string {
  if (!query) return ''
  return query
    .split('&')
    .filter(Boolean)
    .map((pair) => {
      const [k = '', v = ''] = pair.split('=')
      return [uriEncode(decodeURIComponent(k)), uriEncode(decodeURIComponent(v))] as const
    })
    .sort(([a, av], [b, bv]) => (a === b ? (av < bv ? -1 : 1) : a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&')
}

export function verifySigV4(
  req: SignedRequest,
  credentials: readonly Credentials[],
  now: Date = new Date(),
): VerifyResult {
  const auth = req.headers.authorization
  if (!auth) return { ok: false, code: 'AccessDenied', message: 'no Authorization header' }
  const m = AUTH.exec(auth)
  if (!m) return { ok: false, code: 'AccessDenied', message: 'malformed Authorization header' }
  const [
    ,
    accessKeyId = '',
    date = '',
    region = '',
    service = '',
    signedHeaders = '',
    signature = '',
  ] = m
  const cred = credentials.find((c) => c.accessKeyId === accessKeyId)
  if (!cred) return { ok: false, code: 'InvalidAccessKeyId', message: `unknown key ${accessKeyId}` }

  const amzDate = req.headers['x-amz-date'] ?? ''
  const t = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate)
  if (!t || amzDate.slice(0, 8) !== date)
    return {
      ok: false,
      code: 'AccessDenied',
      message: 'x-amz-date missing or not the credential date',
    }
  const when = Date.UTC(
    +(t[1] ?? 0),
    +(t[2] ?? 1) - 1,
    +(t[3] ?? 1),
    +(t[4] ?? 0),
    +(t[5] ?? 0),
    +(t[6] ?? 0),
  )
  if (Math.abs(now.getTime() - when) > 15 * 60_000)
    return {
      ok: false,
      code: 'RequestTimeTooSkewed',
      message: `x-amz-date ${amzDate} is too far from now`,
    }

  const names = signedHeaders.split(';')
  if (!names.includes('host'))
    return { ok: false, code: 'AccessDenied', message: 'host is not a signed header' }
  const payloadHash =
    req.headers['x-amz-content-sha256'] ?? sha256hex(req.body ?? new Uint8Array(0))
  if (
    payloadHash !== 'UNSIGNED-PAYLOAD' &&
    payloadHash !== sha256hex(req.body ?? new Uint8Array(0))
  )
    return {
      ok: false,
      code: 'SignatureDoesNotMatch',
      message: 'x-amz-content-sha256 does not match the body',
    }

  const canonicalHeaders = names
    .map((n) => `${n}:${(req.headers[n] ?? '').trim().replace(/\s+/g, ' ')}\n`)
    .join('')
  const canonicalRequest = [
    req.method.toUpperCase(),
    req.path || '/',
    canonicalQuery(req.query),
    canonicalHeaders,
    signedHeaders,
    payloadHash,
  ].join('\n')
  const scope = `${date}/${region}/${service}/aws4_request`
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256hex(canonicalRequest)].join('\n')
  const key = hmac(
    hmac(hmac(hmac(`AWS4${cred.secretAccessKey}`, date), region), service),
    'aws4_request',
  )
  const expected = createHmac('sha256', key).update(stringToSign).digest()
  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex')))
    return { ok: false, code: 'SignatureDoesNotMatch', message: 'signature does not match' }
  return { ok: true, accessKeyId }
}
