import { AppError, ERROR_CODES, ErrorBodySchema, toAppError } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'

describe('the shared error table', () => {
  it('maps every code to an HTTP error status', () => {
    for (const [code, status] of Object.entries(ERROR_CODES)) {
      expect(status, code).toBeGreaterThanOrEqual(400)
      expect(status, code).toBeLessThan(600)
    }
  })

  it('caller mistakes are 4xx, system failures 5xx', () => {
    for (const code of [
      'INVALID_REQUEST',
      'UNKNOWN_EXPERT',
      'INCOMPATIBLE_EXPERTS',
      'RATE_LIMITED',
    ] as const)
      expect(new AppError(code, 'x').status).toBeLessThan(500)
    for (const code of ['RUNNER_OVERLOADED', 'RUNNER_TIMEOUT', 'INTERNAL'] as const)
      expect(new AppError(code, 'x').status).toBeGreaterThanOrEqual(500)
  })

  it('wraps unknown throwables as INTERNAL and keeps the cause', () => {
    const cause = new TypeError('boom')
    const e = toAppError(cause)
    expect(e.code).toBe('INTERNAL')
    expect(e.cause).toBe(cause)
    expect(ErrorBodySchema.parse({ error: e.message, code: e.code })).toBeTruthy()
  })
})
