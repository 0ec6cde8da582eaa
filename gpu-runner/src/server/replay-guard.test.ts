import { describe, expect, it } from 'vitest'
import { ReplayGuard } from './replay-guard.ts'

// Issue #16, case 6: a captured signed request was accepted again for its whole 300 s window.
describe('ReplayGuard', () => {
  it('accepts a nonce once', () => {
    const g = new ReplayGuard({ windowS: 300 })
    expect(g.admit('a1', 1000, 1000)).toBe(true)
    expect(g.admit('a1', 1000, 1001)).toBe(false)
    expect(g.admit('a2', 1000, 1001)).toBe(true)
  })

  it('forgets nonces once their timestamps have expired (the signature check refuses those)', () => {
    const g = new ReplayGuard({ windowS: 300 })
    g.admit('a1', 1000, 1000)
    g.admit('a2', 1200, 1200)
    expect(g.size).toBe(2)
    g.admit('a3', 1301, 1301)
    expect(g.size).toBe(2)
  })

  it('when full, refuses every timestamp at or below the forgotten ones', () => {
    const g = new ReplayGuard({ windowS: 300, maxEntries: 2 })
    expect(g.admit('a', 1000, 1000)).toBe(true)
    expect(g.admit('b', 1001, 1001)).toBe(true)
    expect(g.admit('c', 1002, 1002)).toBe(true)
    expect(g.size).toBe(2)
    // 'a' was forgotten, but it cannot come back: its timestamp is at the floor now.
    expect(g.admit('a', 1000, 1003)).toBe(false)
    expect(g.admit('late', 1000, 1003)).toBe(false)
    expect(g.admit('fresh', 1003, 1003)).toBe(true)
  })
})
