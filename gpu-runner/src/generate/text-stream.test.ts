import { describe, expect, it } from 'vitest'
import { type Detokenizer, TextStream } from './text-stream.ts'

/** Ids are byte values; decoding is UTF-8 with replacement, like a byte-level BPE decoder on a prefix. */
const bytes: Detokenizer = {
  decode: (ids) => new TextDecoder().decode(Uint8Array.from(ids)),
}
const ids = (s: string) => [...new TextEncoder().encode(s)]

function run(text: string, stops: string[]) {
  const stream = new TextStream(bytes, stops)
  const deltas: string[] = []
  for (const id of ids(text)) {
    const piece = stream.push(id)
    deltas.push(piece.delta)
    if (piece.stopped) return { deltas, stopped: true, text: stream.text }
  }
  deltas.push(stream.finish())
  return { deltas, stopped: false, text: stream.text }
}

describe('TextStream', () => {
  it('holds an incomplete UTF-8 character back until it completes', () => {
    const got = run('a€b', [])
    expect(got.deltas).toEqual(['a', '', '', '€', 'b', ''])
    expect(got.text).toBe('a€b')
  })

  it('ends before a stop string and never sends any part of it', () => {
    const got = run('hello END world', ['END'])
    expect(got.stopped).toBe(true)
    expect(got.text).toBe('hello ')
    expect(got.deltas.join('')).toBe('hello ')
  })

  it('releases a held stop prefix that did not complete', () => {
    const got = run('an ENx and EN', ['END'])
    expect(got.stopped).toBe(false)
    expect(got.text).toBe('an ENx and EN')
  })

  it('finds the earliest of several stop strings', () => {
    expect(run('one two three', ['three', 'two']).text).toBe('one ')
  })
})
