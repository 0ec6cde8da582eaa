/**
 * Replays the V2 clients' captured byte streams (test/fixtures/v2-clients: tritonclient http/aio, KServe's SDK)
 * against a live server, and reads the answers the way those clients do. Requests go out as the exact bytes
 * recorded (method, target, headers in their case and order, body), over a raw socket: fetch would add, drop or
 * re-case headers and could not send a POST without Content-Length. Only `Host` is replaced, and headers passed
 * in `extraHeaders` (a gateway key, a signature) are appended.
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync, inflateSync } from 'node:zlib'

export const V2_CLIENT_FIXTURES = fileURLToPath(new URL('../fixtures/v2-clients', import.meta.url))

export interface Scenario {
  /** e.g. `triton-aio/infer-fp32-binary` */
  scenario: string
  call: string
  request: {
    method: string
    target: string
    headers: [string, string][]
    bodyFile?: string
    json?: unknown
  }
  response: { status: number; headers: [string, string][]; json?: unknown }
  clientResult?: { as_numpy?: Record<string, unknown> } & Record<string, unknown>
}

/** Every REST scenario of the given client folders, with its request body bytes. */
export function loadScenarios(
  clients: readonly string[],
): { scenario: Scenario; body: Buffer; client: string; name: string }[] {
  return clients.flatMap((client) =>
    readdirSync(join(V2_CLIENT_FIXTURES, client))
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => {
        const scenario = JSON.parse(
          readFileSync(join(V2_CLIENT_FIXTURES, client, f), 'utf8'),
        ) as Scenario
        const body = scenario.request.bodyFile
          ? readFileSync(join(V2_CLIENT_FIXTURES, client, scenario.request.bodyFile))
          : Buffer.alloc(0)
        return { scenario, body, client, name: f.replace(/\.json$/, '') }
      }),
  )
}

/** The model a scenario's target names (`/v2/models/{m}/…`), if any. */
export function targetModel(target: string): string | undefined {
  return /^\/v2\/models\/([^/]+)/.exec(target)?.[1]
}

export interface RawResponse {
  status: number
  /** Lower-cased names. */
  headers: Record<string, string>
  /** The body as sent (still compressed when Content-Encoding says so). */
  body: Buffer
}

/** Parses one HTTP/1.1 response from `buf`, or undefined while it is incomplete. */
function parseResponse(buf: Buffer): RawResponse | undefined {
  const end = buf.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const [statusLine = '', ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n')
  const status = Number(statusLine.split(' ')[1])
  const headers: Record<string, string> = {}
  for (const l of lines) {
    const i = l.indexOf(':')
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
  }
  const rest = buf.subarray(end + 4)
  if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
    const parts: Buffer[] = []
    let at = 0
    for (;;) {
      const lineEnd = rest.indexOf('\r\n', at)
      if (lineEnd < 0) return undefined
      const size = Number.parseInt(rest.subarray(at, lineEnd).toString('latin1'), 16)
      if (rest.byteLength < lineEnd + 2 + size + 2) return undefined
      if (size === 0) return { status, headers, body: Buffer.concat(parts) }
      parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size))
      at = lineEnd + 2 + size + 2
    }
  }
  const length = Number(headers['content-length'] ?? 0)
  if (rest.byteLength < length) return undefined
  return { status, headers, body: rest.subarray(0, length) }
}

export interface ReplayOptions {
  /** Rewrites the recorded target (e.g. the fixtures' version `1` to the package's version). */
  target?: (target: string) => string
  /** Headers appended after the recorded ones (e.g. a gateway API key). */
  extraHeaders?: [string, string][]
  /** Replaces the body (e.g. after rewriting its JSON header); Content-Length is recomputed then. */
  body?: Buffer
}

/** Sends the scenario's request bytes to `url` (origin) and reads one response. */
export function replay(
  url: string,
  s: { scenario: Scenario; body: Buffer },
  opts: ReplayOptions = {},
): Promise<RawResponse> {
  const u = new URL(url)
  const body = opts.body ?? s.body
  const target = opts.target ? opts.target(s.scenario.request.target) : s.scenario.request.target
  const lines = [`${s.scenario.request.method} ${target} HTTP/1.1`]
  for (const [name, value] of s.scenario.request.headers) {
    const lower = name.toLowerCase()
    if (lower === 'host') lines.push(`${name}: ${u.host}`)
    else if (lower === 'content-length') lines.push(`${name}: ${body.byteLength}`)
    else lines.push(`${name}: ${value}`)
  }
  for (const [name, value] of opts.extraHeaders ?? []) lines.push(`${name}: ${value}`)
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1')
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname)
    let buf = Buffer.alloc(0)
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`${s.scenario.scenario}: no complete answer in 30 s`))
    }, 30_000)
    socket.on('connect', () => socket.write(Buffer.concat([head, body])))
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk])
      const res = parseResponse(buf)
      if (res) {
        clearTimeout(timer)
        socket.destroy()
        resolve(res)
      }
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** The body with Content-Encoding undone, as tritonclient does for infer answers. */
export function decodedBody(res: RawResponse): Buffer {
  const enc = res.headers['content-encoding']
  if (enc === 'gzip') return gunzipSync(res.body)
  if (enc === 'deflate') return inflateSync(res.body)
  return res.body
}

export interface ReadOutput {
  name: string
  datatype: string
  shape: number[]
  /** Flat values: numbers, booleans, or strings for BYTES. */
  values: (number | boolean | string)[]
}

function readBinary(datatype: string, bytes: Buffer): (number | boolean | string)[] {
  const out: (number | boolean | string)[] = []
  if (datatype === 'BYTES') {
    for (let at = 0; at < bytes.byteLength; ) {
      const len = bytes.readUInt32LE(at)
      out.push(bytes.subarray(at + 4, at + 4 + len).toString('utf8'))
      at += 4 + len
    }
    return out
  }
  const read: Record<string, [number, (at: number) => number | boolean]> = {
    FP32: [4, (at) => bytes.readFloatLE(at)],
    FP64: [8, (at) => bytes.readDoubleLE(at)],
    INT64: [8, (at) => Number(bytes.readBigInt64LE(at))],
    INT32: [4, (at) => bytes.readInt32LE(at)],
    BOOL: [1, (at) => bytes.readUInt8(at) !== 0],
  }
  const r = read[datatype]
  if (!r) throw new Error(`readBinary: no reader for ${datatype}`)
  for (let at = 0; at < bytes.byteLength; at += r[0]) out.push(r[1](at))
  return out
}

/**
 * Reads an infer answer as tritonclient's InferResult does: the JSON header (all of the body without
 * Inference-Header-Content-Length), then each binary output's bytes in output order.
 */
export function readInferAnswer(res: RawResponse): {
  json: Record<string, unknown>
  outputs: Map<string, ReadOutput>
} {
  const body = decodedBody(res)
  const headerLength = res.headers['inference-header-content-length']
  const split = headerLength === undefined ? body.byteLength : Number(headerLength)
  const json = JSON.parse(body.subarray(0, split).toString('utf8')) as {
    outputs: {
      name: string
      datatype: string
      shape: number[]
      data?: (number | boolean | string)[]
      parameters?: { binary_data_size?: number }
    }[]
  } & Record<string, unknown>
  const outputs = new Map<string, ReadOutput>()
  let at = split
  for (const o of json.outputs) {
    const size = o.parameters?.binary_data_size
    const values =
      size === undefined
        ? (o.data ?? []).flat(Number.POSITIVE_INFINITY)
        : readBinary(o.datatype, body.subarray(at, at + size))
    if (size !== undefined) at += size
    outputs.set(o.name, { name: o.name, datatype: o.datatype, shape: o.shape, values })
  }
  return { json, outputs }
}

/**
 * The same request as plain JSON: binary inputs decoded into `data`, compression undone, and the binary and
 * classification parameters dropped. A replay's answer is compared with the server's answer to this, in the same
 * run (the fixtures' own numbers came from an older build).
 */
export function plainJsonRequest(s: { scenario: Scenario; body: Buffer }): Record<string, unknown> {
  const header = (name: string) =>
    s.scenario.request.headers.find(([n]) => n.toLowerCase() === name)?.[1]
  const enc = header('content-encoding')
  const body =
    enc === 'gzip' ? gunzipSync(s.body) : enc === 'deflate' ? inflateSync(s.body) : s.body
  const ihcl = header('inference-header-content-length')
  const split = ihcl === undefined ? body.byteLength : Number(ihcl)
  const json = JSON.parse(body.subarray(0, split).toString('utf8')) as {
    inputs: { datatype: string; data?: unknown; parameters?: Record<string, unknown> }[]
    outputs?: { parameters?: Record<string, unknown> }[]
    parameters?: Record<string, unknown>
  }
  let at = split
  for (const input of json.inputs) {
    const size = input.parameters?.binary_data_size
    if (typeof size !== 'number') continue
    input.data = readBinary(input.datatype, body.subarray(at, at + size))
    at += size
    delete input.parameters?.binary_data_size
  }
  if (json.parameters) delete json.parameters.binary_data_output
  for (const o of json.outputs ?? []) {
    delete o.parameters?.binary_data
    delete o.parameters?.classification
  }
  return json
}

/**
 * Whether a scenario asks only for inputs and outputs the served text package has. The fixtures' text-twin
 * scenarios were captured before the text package existed and guessed some names (`input_ids` alone, a `label`
 * output); those that send `text` and ask for no output or `logits` fit the real package (zoo/text/package).
 */
export function fitsTextPackage(s: { scenario: Scenario }): boolean {
  const json = s.scenario.request.json as
    | { inputs?: { name: string }[]; outputs?: { name: string }[] }
    | undefined
  const inputs = json?.inputs?.map((i) => i.name) ?? []
  const outputs = json?.outputs?.map((o) => o.name) ?? []
  return (
    inputs.every((n) => n === 'text') &&
    outputs.every((n) => n === 'logits' || n === 'expert_weights')
  )
}
