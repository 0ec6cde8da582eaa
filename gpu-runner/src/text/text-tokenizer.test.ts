/**
 * The shared tokenizer module on the text zoo's real tokenizer (zoo/text/models): it reproduces the ids and masks
 * the zoo's models were evaluated with by PyTorch (reference.json, the [CLS] … [SEP] rule at 64 tokens), finds the
 * closing special token by itself, and refuses what it cannot encode. Issue #13.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'
import { AppError } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { type TextRule, TextTokenizer } from './text-tokenizer.ts'

const ZOO = join(import.meta.dirname, '../../../zoo/text/models')
const read = (f: string) => readFileSync(join(ZOO, f))
const zoo = JSON.parse(read('zoo.json').toString()) as {
  tokenizer: { max_length: number; pad_id: number; cls_id: number; sep_id: number }
}
const RULE: TextRule = {
  maxLength: zoo.tokenizer.max_length,
  padId: zoo.tokenizer.pad_id,
  truncation: true,
  idsInput: 'input_ids',
  maskInput: 'attention_mask',
}
const make = (rule: Partial<TextRule> = {}) =>
  TextTokenizer.fromJson(
    read('tokenizer.json'),
    read('tokenizer_config.json'),
    { ...RULE, ...rule },
    'zoo',
  )

function codeOf(f: () => unknown): string {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(AppError)
    return `${(e as AppError).code}: ${(e as AppError).message}`
  }
  throw new Error('expected an error')
}

describe('TextTokenizer on the text zoo', () => {
  const tok = make()

  it("encodes the reference texts to exactly the ids and masks PyTorch's logits were computed on", () => {
    const ref = JSON.parse(read('reference.json').toString()) as {
      texts: string[]
      input_ids: number[][]
      attention_mask: number[][]
    }
    expect(ref.texts.length).toBeGreaterThan(10)
    const { ids, mask, rows, seq } = tok.encodeBatch(ref.texts, (i) => `text ${i}`)
    expect([rows, seq]).toEqual([ref.texts.length, 64])
    // Some reference texts are longer than 64 tokens (truncated) and some shorter (padded).
    expect(ref.attention_mask.some((m) => m.includes(0))).toBe(true)
    expect(ref.attention_mask.some((m) => !m.includes(0))).toBe(true)
    expect(Array.from(ids, Number)).toEqual(ref.input_ids.flat())
    expect(Array.from(mask, Number)).toEqual(ref.attention_mask.flat())
  })

  it('keeps [CLS] first and [SEP] last when it truncates, found from the post-processor', () => {
    const ids = tok.encode('word '.repeat(200), 'long')
    expect(ids).toHaveLength(64)
    expect(ids[0]).toBe(zoo.tokenizer.cls_id)
    expect(ids[63]).toBe(zoo.tokenizer.sep_id)
    expect(tok.encode('', 'empty')).toEqual([zoo.tokenizer.cls_id, zoo.tokenizer.sep_id])
  })

  it("tokenizes a long text from its head: the same ids as the whole text's, and fast on 1 MB", () => {
    const lib = new Tokenizer(
      JSON.parse(read('tokenizer.json').toString()),
      JSON.parse(read('tokenizer_config.json').toString()),
    )
    const rule = (ids: number[]) =>
      ids.length > 64 ? [...ids.slice(0, 63), zoo.tokenizer.sep_id] : ids
    const spam = read('../data/spam/test.jsonl')
      .toString()
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { text: string }).text)
    // Texts of 2-6 kB (the head is cut at the first whitespace after 2,048 characters).
    for (let i = 0; i < 40; i += 4) {
      const long = spam.slice(i, i + 8 + (i % 3) * 4).join('\n\n')
      expect(long.length).toBeGreaterThan(64 * 32)
      expect(tok.encode(long, 'long'), `texts ${i}…`).toEqual(rule(lib.encode(long).ids))
    }
    // Whitespace first, then words: the head has too few pieces, so the whole text is read.
    const spaced = `${' '.repeat(5000)}${'word '.repeat(100)}`
    expect(tok.encode(spaced, 's')).toEqual(rule(lib.encode(spaced).ids))
    // 1 MB, with and without whitespace: 64 ids in well under a second (the library alone overflows its stack).
    for (const huge of ['word '.repeat(200_000), 'x'.repeat(1_000_000), '文本'.repeat(500_000)]) {
      const t0 = performance.now()
      const ids = tok.encode(huge, 'huge')
      expect(ids).toHaveLength(64)
      expect(ids[63]).toBe(zoo.tokenizer.sep_id)
      expect(performance.now() - t0).toBeLessThan(2000)
    }
  })

  it('gives a routing example as flat token arrays named by the model inputs', () => {
    const ex = tok.encodeExample('Mary', 'line 1')
    expect(Object.keys(ex)).toEqual(['input_ids', 'attention_mask'])
    expect(ex.input_ids).toHaveLength(64)
    expect(ex.attention_mask?.filter((v) => v === 1).length).toBe(
      tok.encode('Mary', 'line 1').length,
    )
  })

  it('refuses more tokens than max_length when truncation is off, and lone surrogates', () => {
    const strict = make({ truncation: false })
    expect(strict.encode('a short text', 'x')).toEqual(tok.encode('a short text', 'x'))
    expect(codeOf(() => strict.encode('word '.repeat(200), "input 'text' row 2"))).toMatch(
      /^INVALID_REQUEST: input 'text' row 2 has 202 tokens, more than the model's max_length 64/,
    )
    expect(codeOf(() => strict.encode('word '.repeat(100_000), "input 'text'"))).toMatch(
      /^INVALID_REQUEST: input 'text' has at least \d+ tokens, more than the model's max_length 64/,
    )
    // 1 MB of a character the vocabulary lacks is one [UNK]: what follows is unknowable without reading it all.
    expect(codeOf(() => tok.encode('漢'.repeat(1_000_000), "input 'text'"))).toMatch(
      /^INVALID_REQUEST: input 'text' has 1000000 characters whose first \d+ make only 4 tokens .*; send at most \d+ characters/,
    )
    expect(codeOf(() => tok.encode('bad \ud800 text', "input 'text'"))).toMatch(
      /^INVALID_REQUEST: input 'text' is not valid UTF-8/,
    )
    // A surrogate pair (an emoji) is fine.
    expect(tok.encode('ok 😀', 'x').length).toBeGreaterThan(2)
  })

  it('refuses tokenizer files the library cannot read, and a max_length with no room for text', () => {
    expect(codeOf(() => TextTokenizer.fromJson('[1,2]', undefined, RULE, 'bad'))).toMatch(
      /^INVALID_MODEL: bad: tokenizer.json is not a tokenizer JSON object/,
    )
    expect(codeOf(() => make({ maxLength: 2 }))).toMatch(/^INVALID_MODEL: zoo: max_length 2/)
  })
})
