/**
 * A runner STAND-IN for the gateway's workerd tests: a small real HTTP server on 127.0.0.1 that speaks the
 * Open Inference Protocol V2 like a Twinserve runner (verifying the gateway's HMAC signature with the shared
 * secret) but computes something trivial (each output is the sum of an input's values), with switchable
 * failure modes for routing, failover and breaker tests, and a fixed upstream for the gateway-overhead
 * benchmark. It also generates like a runner serving `--generation` (OpenAI /v1 and /v2 generate[_stream]):
 * the text is `max_tokens` (default 4) words `w0 w1 …`, one per streamed chunk, with `usage` counting one
 * prompt token per word of the prompt; it records cancelled streams. The real runner is tested end to end in test/e2e/.
 * @module
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { flattenTensorData, InferenceRequestSchema, verifyRequest } from '@twinserve/shared'
import type { StandInBehavior, StandInStats } from './stand-in-protocol.ts'

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(text)
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/** The code a real runner sends with each status a stand-in may fail with. */
const FAIL_CODES: Record<number, string> = {
  503: 'RUNNER_OVERLOADED',
  429: 'RATE_LIMITED',
  422: 'NON_FINITE_OUTPUT',
}

export class RunnerStandIn {
  behavior: StandInBehavior = { mode: 'ok' }
  private readonly server: Server
  private readonly sockets = new Set<Socket>()
  private inFlight = 0
  readonly stats: StandInStats

  private constructor(
    readonly id: string,
    readonly models: readonly string[],
    private readonly secret: string,
  ) {
    this.stats = {
      id,
      url: '',
      infer: 0,
      metadata: 0,
      bad_signatures: 0,
      last_headers: {},
      max_in_flight: 0,
      generate: 0,
      streams_cancelled: 0,
      last_generate_body: '',
      last_path: '',
    }
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) =>
        send(res, 500, { error: String(err), code: 'INTERNAL' }),
      )
    })
    this.server.on('connection', (s) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
  }

  static async start(
    id: string,
    models: readonly string[],
    secret: string,
  ): Promise<RunnerStandIn> {
    const r = new RunnerStandIn(id, models, secret)
    await new Promise<void>((resolve) => r.server.listen(0, '127.0.0.1', resolve))
    r.stats.url = `http://127.0.0.1:${(r.server.address() as AddressInfo).port}`
    return r
  }

  /** Stops like a killed process: open connections are destroyed, the port refuses new ones. */
  async kill(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://stand-in')
    const body = await readBody(req)
    if (url.pathname === '/v2/health/live') return send(res, 200, { live: true })
    if (url.pathname === '/v2/health/ready') return send(res, 200, { ready: true })
    const g =
      /^\/v1\/(completions|chat\/completions)$|^\/v2\/models\/([^/]+)\/(generate|generate_stream)$/.exec(
        url.pathname,
      )
    const m = /^\/v2\/models\/([^/]+)(?:\/versions\/[^/]+)?(\/infer)?$/.exec(url.pathname)
    if (!m && !g) return send(res, 404, { error: 'no route', code: 'NOT_FOUND' })

    const verdict = await verifyRequest(this.secret, {
      method: req.method ?? 'GET',
      path: url.pathname + url.search,
      body,
      headers: req.headers,
    })
    if (!verdict.ok) {
      this.stats.bad_signatures += 1
      return send(res, 401, { error: verdict.reason, code: 'UNAUTHENTICATED' })
    }
    this.stats.last_path = url.pathname
    this.stats.last_headers = Object.fromEntries(
      Object.entries(req.headers).map(([k, v]) => [k, String(v)]),
    )
    if (g) return this.generate(req, res, g, body)
    const model = decodeURIComponent(m?.[1] ?? '')
    const infer = m?.[2] !== undefined
    if (infer) this.stats.infer += 1
    else this.stats.metadata += 1

    this.inFlight += 1
    this.stats.max_in_flight = Math.max(this.stats.max_in_flight, this.inFlight)
    try {
      const b = this.behavior
      if (b.mode === 'reset') {
        req.socket.destroy()
        return
      }
      if (b.mode === 'fail') {
        // 429 with Retry-After as the runner's per-tenant merge quota answers; 422 as a non-finite output.
        if (b.status === 429) res.setHeader('retry-after', '7')
        return send(res, b.status, {
          error: `stand-in failing with ${b.status}`,
          code: FAIL_CODES[b.status] ?? 'INTERNAL',
        })
      }
      if (b.mode === 'garbage') return send(res, 200, '{"not":"a v2 response"}')
      if (b.mode === 'delay') await new Promise((r) => setTimeout(r, b.ms))

      if (!this.models.includes(model))
        return send(res, 404, { error: `model '${model}' not found`, code: 'NOT_FOUND' })
      if (!infer)
        return send(res, 200, {
          name: model,
          versions: ['1'],
          platform: 'twinserve-stand-in',
          inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, -1] }],
          outputs: [{ name: 'sum', datatype: 'FP64', shape: [1] }],
        })
      if (req.method !== 'POST')
        return send(res, 405, { error: 'POST only', code: 'METHOD_NOT_ALLOWED' })
      const parsed = InferenceRequestSchema.safeParse(JSON.parse(body))
      if (!parsed.success)
        return send(res, 400, { error: parsed.error.message, code: 'INVALID_REQUEST' })
      const r = parsed.data
      return send(res, 200, {
        model_name: model,
        ...(r.id !== undefined ? { id: r.id } : {}),
        parameters: {
          runner_id: this.id,
          received_parameters: JSON.stringify(r.parameters ?? {}),
        },
        outputs: r.inputs.map((input) => ({
          name: `sum_${input.name}`,
          shape: [1],
          datatype: 'FP64',
          data: [flattenTensorData(input.data).reduce<number>((a, v) => a + Number(v), 0)],
        })),
      })
    } finally {
      this.inFlight -= 1
    }
  }

  /** A generation call: failure modes as for inference, then `w0 w1 …` whole or streamed. */
  private async generate(
    req: IncomingMessage,
    res: ServerResponse,
    g: RegExpExecArray,
    body: string,
  ): Promise<void> {
    this.stats.generate += 1
    this.stats.last_generate_body = body
    const b = this.behavior
    if (b.mode === 'reset') {
      req.socket.destroy()
      return
    }
    if (b.mode === 'fail') {
      // A full KV budget or a draining runner answers 503 with Retry-After.
      if (b.status === 503) res.setHeader('retry-after', '1')
      return send(res, b.status, {
        error: `stand-in failing with ${b.status}`,
        code: FAIL_CODES[b.status] ?? 'INTERNAL',
      })
    }
    if (b.mode === 'garbage') return send(res, 200, '{"not":"a generation"}')
    if (b.mode === 'delay') await new Promise((r) => setTimeout(r, b.ms))
    const json = JSON.parse(body) as {
      model?: string
      prompt?: string
      messages?: Array<{ content: string }>
      text_input?: string
      max_tokens?: number
      parameters?: { max_tokens?: number; stream?: boolean }
      stream?: boolean
      stream_options?: { include_usage?: boolean }
    }
    const v2 = g[2] !== undefined
    const model = v2 ? decodeURIComponent(g[2] ?? '') : (json.model ?? '')
    if (!this.models.includes(model))
      return send(res, 404, { error: `model '${model}' is not served here`, code: 'NOT_FOUND' })
    const chat = g[1] === 'chat/completions'
    const prompt =
      json.prompt ?? json.text_input ?? (json.messages ?? []).map((m) => m.content).join(' ')
    const n = (v2 ? json.parameters?.max_tokens : json.max_tokens) ?? 4
    const words = Array.from({ length: n }, (_, i) => `w${i} `)
    const usage = {
      prompt_tokens: prompt.split(/\s+/).filter(Boolean).length,
      completion_tokens: n,
      total_tokens: 0,
    }
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
    // As the runner names completions: its prefix on the request id the gateway sent.
    const id = `${chat ? 'chatcmpl' : 'cmpl'}-${String(req.headers['x-request-id'] ?? this.id)}`
    const piece = (text: string, finish: 'length' | null) =>
      v2
        ? {
            model_name: model,
            model_version: '1',
            text_output: text,
            ...(finish ? { finish_reason: finish, usage } : {}),
          }
        : chat
          ? {
              id,
              object: 'chat.completion.chunk',
              created: 0,
              model,
              choices: [
                { index: 0, delta: { content: text }, logprobs: null, finish_reason: finish },
              ],
            }
          : {
              id,
              object: 'text_completion',
              created: 0,
              model,
              choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
            }
    const stream =
      g[3] === 'generate_stream' || json.stream === true || json.parameters?.stream === true
    if (!stream) {
      const text = words.join('')
      return send(
        res,
        200,
        v2
          ? {
              model_name: model,
              model_version: '1',
              text_output: text,
              finish_reason: 'length',
              usage,
            }
          : chat
            ? {
                id,
                object: 'chat.completion',
                created: 0,
                model,
                choices: [
                  {
                    index: 0,
                    message: { role: 'assistant', content: text },
                    logprobs: null,
                    finish_reason: 'length',
                  },
                ],
                usage,
                twinserve: { expert_weights: { a: 1 } },
              }
            : {
                id,
                object: 'text_completion',
                created: 0,
                model,
                choices: [{ index: 0, text, logprobs: null, finish_reason: 'length' }],
                usage,
                twinserve: { expert_weights: { a: 1 } },
              },
      )
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
    })
    let closed = false
    res.on('close', () => {
      if (!res.writableEnded) {
        closed = true
        this.stats.streams_cancelled += 1
      }
    })
    const event = (data: unknown) =>
      res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`)
    const tokenMs = b.mode === 'slow_tokens' ? b.ms : 1
    if (!v2) event({ ...piece('', null), twinserve: { expert_weights: { a: 1 } } })
    for (let i = 0; i < n; i++) {
      await new Promise((r) => setTimeout(r, tokenMs))
      if (closed) return
      event(piece(words[i] ?? '', i === n - 1 && v2 ? 'length' : null))
    }
    if (!v2) {
      event(piece('', 'length'))
      if (json.stream_options?.include_usage) event({ ...piece('', null), choices: [], usage })
      event('[DONE]')
    }
    res.end()
  }
}
