import { describe, expect, it } from 'vitest'
import { formatRoutingSummary, parseRoutingSummary } from './routing-summary-header.ts'

describe('routing summary header', () => {
  it('round-trips a summary (4 decimals)', () => {
    const s = {
      rows: 4,
      abstained: 1,
      entropySum: 0.812345,
      experts: [
        { name: 'original', routedRows: 2, weightSum: 1.75 },
        { name: 'blur-noise', routedRows: 1, weightSum: 0.90004 },
      ],
    }
    const text = formatRoutingSummary(s)
    expect(text).toBe('4,1,0.8123;original:2:1.7500;blur-noise:1:0.9000')
    expect(parseRoutingSummary(text)).toEqual({
      rows: 4,
      abstained: 1,
      entropySum: 0.8123,
      experts: [
        { name: 'original', routedRows: 2, weightSum: 1.75 },
        { name: 'blur-noise', routedRows: 1, weightSum: 0.9 },
      ],
    })
  })

  it.each([
    ['', 'empty'],
    ['4,1', 'too few head fields'],
    ['4,5,0', 'more abstained than rows'],
    ['4,1,-1', 'negative entropy'],
    ['4,1,0;a:5:1', 'more routed rows than rows'],
    ['4,1,0;a:1', 'expert without weight'],
    ['4,1,0;:1:1', 'expert without name'],
    ['4,1,0;a:1:1:9', 'extra field'],
    ['4.5,1,0', 'fractional rows'],
    ['4,1,NaN', 'not a number'],
  ])('refuses %j (%s)', (text) => {
    expect(parseRoutingSummary(text)).toBeUndefined()
  })
})
