/**
 * The LM zoo's tokenizer (issue 14) as @huggingface/tokenizers loads it must encode exactly as training did
 * (make_zoo.py's own byte-level BPE) and decode losslessly.
 */
import { createHash } from 'node:crypto'
import { createRng } from '@twinserve/gpu-runner/train'
import { describe, expect, it } from 'vitest'
import {
  LM_ZOO_DOMAINS,
  loadLmZooTokenizer,
  readLmZooJson,
  readLmZooManifest,
  readLmZooSplit,
  renderLmZooChat,
} from './lm-zoo-files.ts'

interface ParityFixture {
  cases: { text: string; ids: number[]; decoded: string }[]
  splits: Record<string, { docs: number; tokens: number; sha256: string }>
}

const tokenizer = loadLmZooTokenizer()
const fixture = readLmZooJson<ParityFixture>('fixtures', 'tokenizer-parity.json')
const manifest = readLmZooManifest()

/** Strings of arbitrary code points (no lone surrogates): ASCII, controls, Latin, CJK, emoji, astral planes. */
function randomTexts(n: number, seed: number): string[] {
  const rng = createRng(seed)
  const pick = (k: number) => Math.floor(rng.uniform() * k)
  const ranges: [number, number][] = [
    [0x20, 0x7e],
    [0x00, 0x1f],
    [0xa0, 0x24f],
    [0x4e00, 0x9fff],
    [0x1f300, 0x1faff],
    [0x10000, 0x10ffff],
  ]
  return Array.from({ length: n }, () => {
    let s = ''
    const len = 1 + pick(80)
    for (let i = 0; i < len; i++) {
      const [lo, hi] = ranges[pick(ranges.length)] ?? [0x20, 0x7e]
      const cp = lo + pick(hi - lo + 1)
      s += cp >= 0xd800 && cp <= 0xdfff ? 'x' : String.fromCodePoint(cp)
    }
    return s
  })
}

describe('LM zoo tokenizer (tokenizers.js) matches training', () => {
  it('encodes and decodes every parity case as make_zoo.py did', () => {
    expect(fixture.cases.length).toBeGreaterThan(40)
    for (const c of fixture.cases) {
      const ids = tokenizer.encode(c.text).ids
      expect(ids, JSON.stringify(c.text)).toEqual(c.ids)
      const body = ids.slice(1)
      const decoded = body.length === 0 ? '' : tokenizer.decode(body)
      expect(decoded).toBe(c.decoded)
      expect(decoded).toBe(c.text)
    }
  })

  it('gives the training ids for every committed validation and test document', () => {
    for (const domain of LM_ZOO_DOMAINS) {
      for (const split of ['validation', 'test'] as const) {
        const expected = fixture.splits[`${domain}/${split}`]
        const ids = readLmZooSplit(domain, split).map((d) => tokenizer.encode(d.text).ids)
        const digest = createHash('sha256').update(JSON.stringify(ids)).digest('hex')
        expect({ docs: ids.length, tokens: ids.flat().length, digest }).toEqual({
          docs: expected?.docs,
          tokens: expected?.tokens,
          digest: expected?.sha256,
        })
      }
    }
  })

  it('round-trips arbitrary Unicode text losslessly', () => {
    for (const text of randomTexts(300, 14)) {
      const ids = tokenizer.encode(text, { add_special_tokens: false }).ids
      expect(tokenizer.decode(ids)).toBe(text)
    }
  })

  it('has the special tokens zoo.json names, BOS first on encode, none with add_special_tokens false', () => {
    const { specialTokens, bosTokenId, eosTokenId, padTokenId } = manifest.tokenizer
    for (const [token, id] of Object.entries(specialTokens)) {
      expect(tokenizer.token_to_id(token)).toBe(id)
      expect(tokenizer.encode(token, { add_special_tokens: false }).ids).toEqual([id])
    }
    expect([specialTokens['<|bos|>'], specialTokens['<|eos|>'], specialTokens['<|pad|>']]).toEqual([
      bosTokenId,
      eosTokenId,
      padTokenId,
    ])
    expect(tokenizer.encode('Hello').ids[0]).toBe(bosTokenId)
    expect(tokenizer.encode('Hello', { add_special_tokens: false }).ids[0]).not.toBe(bosTokenId)
  })

  it('renders the chat template to the example in zoo.json, which starts with a single BOS', () => {
    const text = renderLmZooChat(manifest.chatTemplate, [
      { role: 'user', content: 'Subject: meeting' },
    ])
    expect(text).toBe(manifest.chatTemplate.example)
    const ids = tokenizer.encode(text, { add_special_tokens: false }).ids
    expect(ids[0]).toBe(manifest.tokenizer.bosTokenId)
    expect(ids[1]).toBe(manifest.tokenizer.specialTokens['<|user|>'])
    expect(ids.filter((id) => id === manifest.tokenizer.bosTokenId)).toHaveLength(1)
    expect(ids.at(-2)).toBe(manifest.tokenizer.specialTokens['<|assistant|>'])
  })
})
