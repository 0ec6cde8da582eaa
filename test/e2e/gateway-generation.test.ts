/**
 * Generation through the real gateway (workerd under wrangler dev) from a real runner process serving the LM
 * zoo's package with `--generation lm-twin=zoo/lm/models` (issue 14): the official `openai` client streams a
 * chat completion from the GATEWAY with a mix in the body; a client that leaves mid-stream frees the runner's
 * sequence; an unknown model is 404, `max_tokens: 0` is 400, and a key's token limit answers 429. The guide
 * docs/generate.md is run here block by block (curl, the `openai` client, an A/B experiment with feedback on a
 * completion) against this gateway and runner.
 */
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { CreatedApiKeySchema, OpenAIErrorBodySchema } from '@twinserve/shared'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { docBlocks } from '../support/doc-blocks.ts'
import { type E2eGateway, startE2eGateway, startGatewayRunner } from '../support/gateway-harness.ts'
import type { RunnerProcess } from '../support/runner-harness.ts'

const REPO = fileURLToPath(new URL('../..', import.meta.url))
const MODEL = 'lm-twin'
let gw: E2eGateway
let runner: RunnerProcess
let key: string

beforeAll(async () => {
  gw = await startE2eGateway()
  key = await gw.createKey()
  runner = await startGatewayRunner(gw, {
    packages: [join(REPO, 'zoo/lm/package')],
    runnerId: 'lm-a',
    args: ['--generation', `${MODEL}=${join(REPO, 'zoo/lm/models')}`],
    startTimeoutMs: 60_000,
  })
}, 120_000)
afterAll(async () => {
  await runner?.stop()
  await gw?.stop()
})

const post = (path: string, body: unknown, token = key, signal?: AbortSignal) =>
  fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  })

describe('generation through the gateway', () => {
  it('the official openai client streams a chat completion from the gateway with a mix', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key })
    const models = await client.models.list()
    expect(models.data.map((m) => m.id)).toContain(MODEL)
    const params = {
      model: MODEL,
      messages: [{ role: 'user' as const, content: 'The proof of the pudding' }],
      max_tokens: 16,
      temperature: 0,
      stream: true as const,
      stream_options: { include_usage: true },
      twinserve: { experts: { fortunes: 0.7, emails: 0.3 } },
    }
    const stream = await client.chat.completions.create(params)
    let text = ''
    let chunks = 0
    let weights: unknown
    let usage: unknown
    for await (const chunk of stream) {
      chunks += 1
      weights ??= (chunk as { twinserve?: { expert_weights: unknown } }).twinserve?.expert_weights
      text += chunk.choices[0]?.delta.content ?? ''
      usage ??= chunk.usage
    }
    expect(chunks).toBeGreaterThan(2)
    expect(weights).toMatchObject({
      fortunes: expect.closeTo(0.7, 5),
      emails: expect.closeTo(0.3, 5),
    })
    expect(usage).toMatchObject({ completion_tokens: expect.any(Number) })
    // Greedy: the whole answer through the gateway is the streamed text.
    const whole = await client.chat.completions.create({ ...params, stream: false })
    expect(whole.choices[0]?.message.content).toBe(text)
  })

  it('cancel mid-stream, then served again; unknown model 404; max_tokens 0 → 400', async () => {
    const abort = new AbortController()
    const res = await post(
      '/v1/completions',
      { model: MODEL, prompt: 'Once', max_tokens: 200, temperature: 0.8, seed: 3, stream: true },
      key,
      abort.signal,
    )
    expect(res.status).toBe(200)
    const reader = res.body?.getReader()
    await reader?.read()
    abort.abort()
    // The gateway cancels its runner call (the workerd test shows the runner's stream cancelled; the runner's
    // own test that a cancelled stream frees its sequence); the runner keeps serving.
    let status = 0
    for (let i = 0; i < 60 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 50))
      const again = await post('/v1/completions', { model: MODEL, prompt: 'Once', max_tokens: 4 })
      status = again.status
      await again.text()
    }
    expect(status).toBe(200)

    const unknown = await post('/v1/completions', { model: 'no-such-lm', prompt: 'x' })
    expect(unknown.status).toBe(404)
    expect(OpenAIErrorBodySchema.parse(await unknown.json()).error.type).toBe('not_found_error')
    const zero = await post('/v1/chat/completions', {
      model: MODEL,
      messages: [{ role: 'user', content: 'x' }],
      max_tokens: 0,
    })
    expect(zero.status).toBe(400)
    expect(OpenAIErrorBodySchema.parse(await zero.json()).error.message).toMatch(/max_tokens/)
  })

  it('a key with tokens_per_minute is refused (429 + Retry-After) once its tokens are spent', async () => {
    const made = await fetch(`${gw.url}/admin/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        tenant: 'tpm',
        scopes: ['infer'],
        models: [MODEL],
        tokens_per_minute: 20,
      }),
    })
    const limited = CreatedApiKeySchema.parse(await made.json()).key
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: limited, maxRetries: 0 })
    let refused: unknown
    for (let i = 0; i < 10 && !refused; i++) {
      try {
        const s = await client.completions.create({
          model: MODEL,
          prompt: 'Once upon',
          max_tokens: 12,
          stream: true,
        })
        for await (const _ of s) {
          // drain
        }
      } catch (err) {
        refused = err
      }
    }
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError)
    const e = refused as InstanceType<typeof OpenAI.RateLimitError>
    expect(e.status).toBe(429)
    expect(Number(e.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1)
  })
})

const exec = promisify(execFile)
const GUIDE = 'docs/generate.md'

/** How each block of the guide is checked: its output, or why it is not run here (and what runs it). */
type GuideCheck = { skip: string } | { check: (stdout: string) => void }

const mixOf = (line: string) => JSON.parse(line) as Record<string, number>

/** Keyed by the start of the block's text; every runnable block needs one, and every entry a block. */
const GUIDE_CHECKS: [string, GuideCheck][] = [
  [
    'npx twinserve build zoo/lm/recipe.yaml',
    {
      skip: 'minutes of CPU; test/builder/decoder-kv-cache.test.ts builds the zoo’s decoder recipe',
    },
  ],
  [
    'npm start',
    {
      skip: 'test/e2e/quick-start.test.ts runs npm start; this file’s runner has the same --package/--generation',
    },
  ],
  [
    'curl -s "$TWINSERVE_URL/v1/completions" -H "authorization: Bearer $TWINSERVE_API_KEY" -H \'content-type: application/json\' -d \'{"model": "lm-twin", "prompt": "Dear friend',
    {
      check: (out) => {
        const a = JSON.parse(out) as { text: string; mix: Record<string, number>; usage: unknown }
        expect(a.text.length).toBeGreaterThan(0)
        expect(a.mix.emails).toBeCloseTo(0.8, 5)
        expect(a.mix.fiction).toBeCloseTo(0.2, 5)
        expect(a.usage).toMatchObject({ completion_tokens: 24 })
      },
    },
  ],
  [
    'curl -s "$TWINSERVE_URL/v1/completions" -H "authorization: Bearer $TWINSERVE_API_KEY" -H \'content-type: application/json\' -d \'{"model": "lm-twin", "prompt": "Fellow-Citizens',
    {
      check: (out) => {
        const [speech = '', email = ''] = out.trim().split('\n')
        // The router's mix for a speech prompt leans to `speeches`; top_k 1 keeps one expert for the email.
        const s = mixOf(speech)
        expect(Object.keys(s)).toHaveLength(5)
        expect(Math.max(...Object.values(s))).toBe(s.speeches)
        const e = mixOf(email)
        expect(Object.values(e).filter((w) => w > 0)).toHaveLength(1)
        expect(e.emails).toBeGreaterThan(0)
      },
    },
  ],
  [
    'curl -sN "$TWINSERVE_URL/v1/chat/completions"',
    {
      check: (out) => {
        const events = out.split('\n\n').filter((e) => e.startsWith('data: '))
        expect(events.at(-1)).toBe('data: [DONE]')
        expect(events.length).toBeGreaterThan(3)
        const first = JSON.parse(events[0]?.slice(6) ?? '') as {
          twinserve: { expert_weights: Record<string, number> }
        }
        expect(first.twinserve.expert_weights.fortunes).toBeCloseTo(0.7, 5)
      },
    },
  ],
  [
    'curl -s "$TWINSERVE_URL/v2/models/lm-twin/generate"',
    {
      check: (out) => {
        const a = JSON.parse(out) as { text_output: string; expert_weights: Record<string, number> }
        expect(a.text_output.length).toBeGreaterThan(0)
        expect(a.expert_weights.fiction).toBe(1)
      },
    },
  ],
  [
    "import OpenAI from 'openai'",
    {
      check: (out) => {
        const mix = /^mix: (.*)$/m.exec(out)?.[1] ?? ''
        expect(mixOf(mix).fortunes).toBeCloseTo(0.7, 5)
        expect(out).toMatch(/^text: ".+"$/m)
      },
    },
  ],
  [
    'jq -n --arg p',
    {
      check: (out) => {
        const [long = '', unknown = ''] = out.trim().split('\n')
        const a = JSON.parse(long) as { message: string; code: string; type: string }
        expect(a.code).toBe('INVALID_REQUEST')
        expect(a.message).toMatch(/over the context limit/)
        const b = JSON.parse(unknown) as { message: string; type: string }
        expect(b.type).toBe('not_found_error')
        expect(b.message).toMatch(/poetry/)
      },
    },
  ],
  ['{\n  "error"', { skip: 'an example answer, not a command' }],
  [
    'EXP=$(curl',
    {
      check: (out) => {
        const [started = '', served = '', rated = '', ...rest] = out.trim().split('\n')
        expect(JSON.parse(started)).toMatchObject({ status: 'running' })
        const answer = JSON.parse(served) as { id: string; arm: string }
        expect(answer.id).toMatch(/^cmpl-/)
        expect(['router', 'fiction-mix']).toContain(answer.arm)
        // The rating by the completion's id counts for the arm that served it.
        expect(JSON.parse(rated)).toEqual({ arm: answer.arm, reward: 1 })
        const stopped = rest.pop() ?? ''
        const arms = rest.map((l) => JSON.parse(l) as { arm: string; n: number; feedback: number })
        expect(arms.find((a) => a.arm === answer.arm)).toEqual({
          arm: answer.arm,
          n: 1,
          feedback: 1,
        })
        expect(JSON.parse(stopped)).toEqual({ status: 'stopped' })
      },
    },
  ],
]

describe(`the guide ${GUIDE}, run against this gateway and runner`, () => {
  it('runs every sh and js block and checks what it prints', async () => {
    const blocks = docBlocks(readFileSync(join(REPO, GUIDE), 'utf8'))
    const made = await fetch(`${gw.url}/admin/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenant: 'guide', scopes: ['infer', 'admin'], models: ['*'] }),
    })
    const env = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      TWINSERVE_URL: gw.url,
      TWINSERVE_API_KEY: CreatedApiKeySchema.parse(await made.json()).key,
    }
    const used = new Set<string>()
    for (const block of blocks) {
      const entry = GUIDE_CHECKS.find(([start]) => block.text.startsWith(start))
      expect(
        entry,
        `no GUIDE_CHECKS entry for this block of ${GUIDE}:\n${block.text}`,
      ).toBeDefined()
      if (!entry) continue
      used.add(entry[0])
      const [, how] = entry
      if ('skip' in how) continue
      const run =
        block.lang === 'js'
          ? exec(process.execPath, ['--input-type=module', '-e', block.text], { cwd: REPO, env })
          : // Generous: a streamed completion shares the 2 cores with the other test files on CI.
            exec('sh', ['-ec', block.text], { cwd: REPO, env, timeout: 90_000 })
      const { stdout } = await run
      try {
        how.check(stdout)
      } catch (err) {
        throw new Error(`${GUIDE} block printed:\n${stdout}\n${String(err)}`)
      }
    }
    expect(GUIDE_CHECKS.map(([k]) => k).filter((k) => !used.has(k))).toEqual([])
  }, 180_000)
})
