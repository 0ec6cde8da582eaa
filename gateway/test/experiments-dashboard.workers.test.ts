import { describe, expect, it } from 'vitest'
import { gw } from './helpers.ts'

// The page's behaviour with real data in a real browser is tested end to end in test/e2e/dashboard.test.ts.
describe('dashboard assets', () => {
  it('serves the page with a strict content security policy and no data in it', async () => {
    const res = await gw('/dashboard')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    const csp = res.headers.get('content-security-policy') ?? ''
    expect(csp).toContain("script-src 'self'")
    expect(csp).toContain("connect-src 'self'")
    const html = await res.text()
    expect(html).toContain('<script src="/dashboard/chart.umd.min.js"></script>')
    expect(html).toContain('<script type="module" src="/dashboard/dashboard.js"></script>')
    expect(html).not.toMatch(/exp_[0-9a-f]{16}/)
  })

  it('serves the pinned Chart.js browser bundle from the Worker itself', async () => {
    const res = await gw('/dashboard/chart.umd.min.js')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    const js = await res.text()
    expect(js).toMatch(/^\/\*!\n \* Chart\.js v4\.6\.1\n/)
    expect(js.length).toBeGreaterThan(150_000)
  })

  it('serves the dashboard script', async () => {
    const res = await gw('/dashboard/dashboard.js')
    expect(res.status).toBe(200)
    const js = await res.text()
    expect(js).toContain("KEY_STORAGE = 'twinserve.admin-key'")
    expect(js).toContain('/admin/experiments')
  })
})
