/**
 * Captures the gateway's structured log lines per test (the Worker and its Durable Objects run in the test's
 * isolate, so console is shared), prints them only when the test fails, and lets tests assert on them.
 * @module
 */
import { afterEach, beforeEach, onTestFailed } from 'vitest'

type Line = Record<string, unknown>
const captured: string[] = []
const original = { log: console.log, warn: console.warn, error: console.error }

beforeEach(() => {
  captured.length = 0
  for (const level of ['log', 'warn', 'error'] as const)
    console[level] = (...args: unknown[]) => {
      captured.push(args.map(String).join(' '))
    }
  onTestFailed(() => {
    for (const line of captured) original.log(line)
  })
})

afterEach(() => {
  Object.assign(console, original)
})

/** The JSON log lines written so far in this test. */
export function gatewayLogs(): Line[] {
  return captured.flatMap((l) => {
    try {
      const v = JSON.parse(l) as unknown
      return v && typeof v === 'object' ? [v as Line] : []
    } catch {
      return []
    }
  })
}
