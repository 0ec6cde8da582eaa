import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { AppError } from './errors.ts'
import {
  checkJsonDepth,
  describeIssues,
  isJsonContentType,
  MAX_DESCRIBED_ISSUES,
  MAX_JSON_DEPTH,
  methodNotAllowed,
  parseDeadlineHeader,
  parseJsonText,
  requestIdFrom,
  requireJsonContentType,
} from './http.ts'

function thrown(f: () => unknown): AppError {
  try {
    f()
  } catch (err) {
    if (err instanceof AppError) return err
    throw err
  }
  throw new Error('did not throw')
}

describe('request ids', () => {
  it.each([
    ['abc-123', true],
    ['trace:1.2_3', true],
    ['x'.repeat(128), true],
    ['x'.repeat(129), false],
    ['bad id', false],
    ['tab\tid', false],
    ['', false],
  ])('%j kept: %s', (given, kept) => {
    const id = requestIdFrom(given)
    if (kept) expect(id).toBe(given)
    else expect(id).toMatch(/^[0-9a-f-]{36}$/)
  })
  it('mints a fresh UUID when none is given', () => {
    expect(requestIdFrom(undefined)).not.toBe(requestIdFrom(undefined))
  })
})

describe('deadline header', () => {
  it.each([
    ['1', 1],
    ['250', 250],
    ['999999999', 999_999_999],
  ])('%j → %d ms', (v, ms) => expect(parseDeadlineHeader(v)).toBe(ms))
  it.each(['0', '-5', '1.5', 'soon', '', '1000000000'])('%j → 400', (v) => {
    const e = thrown(() => parseDeadlineHeader(v))
    expect(e.code).toBe('INVALID_REQUEST')
    expect(e.message).toMatch(/x-twinserve-deadline-ms must be a positive integer/)
  })
})

describe('describeIssues', () => {
  const Schema = z.strictObject({ a: z.number(), b: z.array(z.string()) })
  it('names each issue by its path, under a root when given', () => {
    const r = Schema.safeParse({ a: 'x', b: [1] })
    if (r.success) throw new Error('parsed')
    expect(describeIssues(r.error)).toMatch(/^a: .*; b\.0: /)
    expect(describeIssues(r.error, { root: 'query' })).toMatch(/^query\.a: .*; query\.b\.0: /)
  })
  it(`says how many more after ${MAX_DESCRIBED_ISSUES}`, () => {
    const r = z.array(z.number()).safeParse(['a', 'b', 'c', 'd', 'e', 'f', 'g'])
    if (r.success) throw new Error('parsed')
    const text = describeIssues(r.error)
    expect(text.split('; ')).toHaveLength(MAX_DESCRIBED_ISSUES + 1)
    expect(text).toMatch(/; and 2 more$/)
  })
  it('takes a message of its own for some issues', () => {
    const r = Schema.safeParse({ a: 1, b: [], c: true })
    if (r.success) throw new Error('parsed')
    const text = describeIssues(r.error, {
      describe: (i) =>
        i.code === 'unrecognized_keys' ? `unknown: ${i.keys.join(',')}` : undefined,
    })
    expect(text).toBe('unknown: c')
  })
})

describe('JSON bodies', () => {
  it.each([
    ['application/json', true],
    ['application/json; charset=utf-8', true],
    ['Application/JSON', true],
    ['application/merge-patch+json', true],
    ['text/plain', false],
    ['application/jsonp', false],
    [undefined, false],
  ])('%j is JSON: %s', (type, ok) => {
    expect(isJsonContentType(type)).toBe(ok)
    if (!ok) expect(thrown(() => requireJsonContentType(type)).code).toBe('UNSUPPORTED_MEDIA_TYPE')
  })
  it('parses against the schema; 400 for bad syntax or a bad field', () => {
    const S = z.object({ n: z.number() })
    expect(parseJsonText('{"n": 1}', S)).toEqual({ n: 1 })
    expect(thrown(() => parseJsonText('{"n": ', S)).message).toMatch(/^body is not valid JSON/)
    expect(thrown(() => parseJsonText('{"n": "1"}', S, 'invalid thing')).message).toMatch(
      /^invalid thing: n: /,
    )
  })
})

describe('405', () => {
  it('names the method, the path and what is allowed, in the message and Allow', () => {
    const { error, headers } = methodNotAllowed('GET', '/v2/models/m/infer', ['POST'])
    expect(error.code).toBe('METHOD_NOT_ALLOWED')
    expect(error.status).toBe(405)
    expect(error.message).toBe('GET is not allowed on /v2/models/m/infer; use POST')
    expect(headers).toEqual({ allow: 'POST' })
  })
})

// Issue #16, case 3: a 4 KB body nesting `data` about 2,000 levels deep overflowed the stack in the recursive
// tensor schema (500 INTERNAL on the runner and the gateway).
describe('JSON nesting limit', () => {
  const nested = (depth: number) => `${'['.repeat(depth)}1${']'.repeat(depth)}`
  it('refuses deep nesting before parsing, naming the limit', () => {
    const body = `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":${nested(2000)}}]}`
    const e = thrown(() => parseJsonText(body, z.unknown()))
    expect(e.code).toBe('INVALID_REQUEST')
    expect(e.message).toMatch(new RegExp(`nests deeper than ${MAX_JSON_DEPTH} levels`))
  })
  it('accepts the limit exactly, and brackets inside strings do not count', () => {
    expect(() => checkJsonDepth(nested(MAX_JSON_DEPTH))).not.toThrow()
    expect(() => checkJsonDepth(nested(MAX_JSON_DEPTH + 1))).toThrow(/nests deeper/)
    expect(() => checkJsonDepth(`{"a":"${'['.repeat(500)}\\"${'{'.repeat(500)}"}`)).not.toThrow()
  })
})
