import { describe, expect, it } from 'vitest'
import { ApiKeySchema, CreateApiKeyRequestSchema } from './api-keys.ts'

describe('CreateApiKeyRequestSchema', () => {
  const cases: Array<[string, unknown, boolean, RegExp?]> = [
    ['infer key for one model', { tenant: 'acme', scopes: ['infer'], models: ['demo'] }, true],
    ['infer key for all models', { tenant: 'acme', scopes: ['infer'], models: ['*'] }, true],
    ['admin-only key needs no models', { tenant: 'ops', scopes: ['admin'] }, true],
    [
      'limits and quota',
      {
        tenant: 'acme',
        name: 'ci',
        scopes: ['infer', 'admin'],
        models: ['demo'],
        rate_limit: { requests_per_second: 2.5, burst: 5 },
        daily_quota: 1000,
      },
      true,
    ],
    ['infer without models', { tenant: 'acme', scopes: ['infer'] }, false, /at least one model/],
    ['no scopes', { tenant: 'acme', scopes: [] }, false, /scopes/],
    ['unknown scope', { tenant: 'acme', scopes: ['root'] }, false, /scopes/],
    ['repeated scope', { tenant: 'acme', scopes: ['admin', 'admin'] }, false, /repeat/],
    ['bad tenant', { tenant: '-acme', scopes: ['admin'] }, false, /tenant/],
    ['bad model name', { tenant: 'a', scopes: ['infer'], models: ['Demo!'] }, false, /models/],
    ['unknown field', { tenant: 'a', scopes: ['admin'], owner: 'x' }, false, /owner/],
    [
      'zero burst',
      { tenant: 'a', scopes: ['admin'], rate_limit: { requests_per_second: 1, burst: 0 } },
      false,
      /burst/,
    ],
    [
      'fractional quota',
      { tenant: 'a', scopes: ['admin'], daily_quota: 1.5 },
      false,
      /daily_quota/,
    ],
  ]
  for (const [name, input, ok, message] of cases)
    it(name, () => {
      const r = CreateApiKeyRequestSchema.safeParse(input)
      expect(r.success).toBe(ok)
      if (!r.success && message)
        expect(r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')).toMatch(
          message,
        )
    })

  it('defaults models to none (so an admin key covers no model)', () => {
    expect(CreateApiKeyRequestSchema.parse({ tenant: 'ops', scopes: ['admin'] }).models).toEqual([])
  })
})

describe('ApiKeySchema', () => {
  it('has no field for the secret or its hash', () => {
    expect(Object.keys(ApiKeySchema.shape)).not.toContain('key')
    expect(Object.keys(ApiKeySchema.shape)).not.toContain('key_hash')
  })
})
