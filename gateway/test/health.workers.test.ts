import { SELF } from 'cloudflare:test'
import { LiveResponseSchema } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'

describe('gateway health (inside workerd)', () => {
  it('answers GET /v2/health/live in the Open Inference Protocol shape', async () => {
    expect((globalThis as { navigator?: { userAgent: string } }).navigator?.userAgent).toBe(
      'Cloudflare-Workers',
    )
    const res = await SELF.fetch('http://gateway/v2/health/live')
    expect(res.status).toBe(200)
    expect(LiveResponseSchema.parse(await res.json())).toEqual({ live: true })
  })
})
