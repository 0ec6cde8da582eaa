import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { routingLine, writeRoutingJsonl } from './routing-data.ts'

const dir = mkdtempSync(join(tmpdir(), 'twinserve-routing-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** n examples whose pixels encode (task, row) so that lines can be traced back. */
const source = (expert: string, n: number, tag: number) => ({
  expert,
  n,
  x: Float32Array.from(
    { length: n * 784 },
    (_, i) => ((Math.floor(i / 784) + tag * 100) % 1000) / 1000 + 0.00012,
  ),
})

describe('routing JSONL', () => {
  it('writes one {"expert", "inputs": {"pixels": [784]}} object per line, rounded to 3 decimals', () => {
    const line = routingLine(
      'rotated',
      Float32Array.from({ length: 784 }, (_, i) => (i === 0 ? 0.12345 : i === 1 ? 1 : 0)),
    )
    const parsed = JSON.parse(line) as { expert: string; inputs: { pixels: number[] } }
    expect(Object.keys(parsed)).toEqual(['expert', 'inputs'])
    expect(parsed.expert).toBe('rotated')
    expect(parsed.inputs.pixels).toHaveLength(784)
    expect(parsed.inputs.pixels.slice(0, 3)).toEqual([0.123, 1, 0])
  })

  it('samples per task with a seed, interleaves tasks, caps at the task size, and writes atomically', () => {
    const path = join(dir, 'sub', 'routing.jsonl')
    const sources = [source('a', 10, 0), source('b', 3, 1)]
    const counts = writeRoutingJsonl(path, sources, 5, 42)
    expect(counts).toEqual({ a: 5, b: 3 })
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n')
    expect(lines.map((l) => (JSON.parse(l) as { expert: string }).expert)).toEqual([
      'a',
      'b',
      'a',
      'b',
      'a',
      'b',
      'a',
      'a',
    ])
    const rowsA = lines
      .map((l) => JSON.parse(l) as { expert: string; inputs: { pixels: number[] } })
      .filter((l) => l.expert === 'a')
      .map((l) => Math.round((l.inputs.pixels[0] ?? 0) * 1000))
    expect(new Set(rowsA).size).toBe(5) // distinct training rows
    const again = join(dir, 'again.jsonl')
    writeRoutingJsonl(again, sources, 5, 42)
    expect(readFileSync(again)).toEqual(readFileSync(path))
    writeRoutingJsonl(again, sources, 5, 43)
    expect(readFileSync(again)).not.toEqual(readFileSync(path))
    expect(readdirSync(join(dir, 'sub'))).toEqual(['routing.jsonl']) // no temp files left
  })

  it('refuses a bad count', () => {
    expect(() => writeRoutingJsonl(join(dir, 'x.jsonl'), [], -1, 1)).toThrow(
      /perTask must be a non-negative integer/,
    )
  })
})
