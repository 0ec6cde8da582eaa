import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { TextTokenizer } from '../../text/text-tokenizer.ts'
import type { IoTensor } from '../import/model-io.ts'
import { readRoutingData, splitRouting } from './routing-data.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-routing-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const inputs: IoTensor[] = [{ name: 'x', elem: 'float', dims: ['batch', 2] }]
const line = (expert: string, x: unknown = [1, 2]) => JSON.stringify({ expert, inputs: { x } })

async function file(name: string, lines: string[]): Promise<string> {
  const path = join(root, name)
  await writeFile(path, `${lines.join('\n')}\n`)
  return path
}

describe('routing data', () => {
  it('reads examples, caps them per expert, and skips blank lines', async () => {
    const lines = ['a', 'b', 'a', 'b', 'a', 'b', 'a', '', 'b', 'a'].map((e) => (e ? line(e) : ''))
    const path = await file('ok.jsonl', lines)
    expect(await readRoutingData(path, ['a', 'b'], inputs)).toHaveLength(9)
    const capped = await readRoutingData(path, ['a', 'b'], inputs, { maxPerExpert: 3 })
    expect(capped.map((e) => e.expert)).toEqual([0, 1, 0, 1, 0, 1])
  })

  it.each([
    ['bad JSON', ['{"expert": '], /line 1: not valid JSON/],
    ['an array', ['[1, 2]'], /line 1: expected an object/],
    [
      'an unknown expert',
      [line('a'), line('zz')],
      /line 2: expert 'zz' is not in the recipe \(a, b\)/,
    ],
    [
      'an unknown input',
      [JSON.stringify({ expert: 'a', inputs: { y: [1] } })],
      /line 1: input 'y' is not an input of the model \(x\)/,
    ],
    [
      'a missing input',
      [JSON.stringify({ expert: 'a', inputs: {} })],
      /line 1: input 'x' is missing/,
    ],
    [
      'non-numbers',
      [line('a', [1, 'x'])],
      /line 1: input 'x' must be a non-empty flat array of finite numbers/,
    ],
    [
      'too few examples of an expert',
      [line('a'), line('a'), line('a'), line('b')],
      /fewer than 3 examples for expert\(s\) b/,
    ],
  ])('refuses %s, naming the line', async (_label, lines, message) => {
    const path = await file('bad.jsonl', lines)
    await expect(readRoutingData(path, ['a', 'b'], inputs)).rejects.toThrow(message)
  })

  it('refuses a missing file', async () => {
    await expect(readRoutingData(join(root, 'nope.jsonl'), ['a'], inputs)).rejects.toThrow(
      /router data file .*nope.jsonl not found/,
    )
  })

  it('splits each expert in proportion, disjointly and deterministically', () => {
    const examples = Array.from({ length: 100 }, (_, i) => ({
      expert: i % 2,
      inputs: { x: [i, i] },
    }))
    const a = splitRouting(examples, 2, { heldoutFraction: 0.2, validationFraction: 0.1, seed: 3 })
    const b = splitRouting(examples, 2, { heldoutFraction: 0.2, validationFraction: 0.1, seed: 3 })
    expect(a).toEqual(b)
    expect([a.train.length, a.validation.length, a.heldout.length]).toEqual([70, 10, 20])
    for (const part of [a.train, a.validation, a.heldout])
      expect(part.filter((e) => e.expert === 0).length * 2).toBe(part.length)
    const ids = [...a.train, ...a.validation, ...a.heldout].map((e) => e.inputs.x?.[0])
    expect(new Set(ids).size).toBe(100)
    const c = splitRouting(examples, 2, { heldoutFraction: 0.2, validationFraction: 0.1, seed: 4 })
    expect(c.heldout.map((e) => e.inputs.x?.[0])).not.toEqual(a.heldout.map((e) => e.inputs.x?.[0]))
  })
})

describe('text routing data (issue #13)', () => {
  const ZOO = join(import.meta.dirname, '../../../../zoo/text/models')
  const rule = {
    maxLength: 64,
    padId: 0,
    truncation: false,
    idsInput: 'input_ids',
    maskInput: 'attention_mask',
  }
  const text = TextTokenizer.fromJson(
    readFileSync(join(ZOO, 'tokenizer.json')),
    readFileSync(join(ZOO, 'tokenizer_config.json')),
    rule,
    'zoo',
  )
  const tokenInputs: IoTensor[] = [
    { name: 'input_ids', elem: 'int64', dims: ['batch', 'seq'] },
    { name: 'attention_mask', elem: 'int64', dims: ['batch', 'seq'] },
  ]
  const textLine = (expert: string, t: unknown, more: Record<string, unknown> = {}) =>
    JSON.stringify({ expert, inputs: { text: t, ...more } })
  const texts = ['free money now', 'Mary', 'the state of the union', 'Bob', 'click here', 'Ann']

  it('tokenizes each text with the package tokenizer into the token inputs', async () => {
    const path = await file(
      'text.jsonl',
      texts.map((t, i) => textLine(i % 2 ? 'b' : 'a', t)),
    )
    const got = await readRoutingData(path, ['a', 'b'], tokenInputs, { text })
    expect(got.map((e) => e.inputs)).toEqual(texts.map((t) => text.encodeExample(t, 'x')))
  })

  it.each([
    [
      'text without a tokenizer',
      [textLine('a', 'hi')],
      false,
      /line 1: input 'text' is raw text, but the recipe has no tokenizer/,
    ],
    ['a non-string text', [textLine('a', [1, 2])], true, /line 1: input 'text' must be a string/],
    [
      'text beside token inputs',
      [textLine('a', 'hi', { input_ids: [2, 3] })],
      true,
      /line 1: give either 'text' or the token inputs, not both/,
    ],
    [
      'a text over max_length without truncation',
      [textLine('a', 'word '.repeat(100))],
      true,
      /router data .*, line 1: 'text' has \d+ tokens, more than the model's max_length 64/,
    ],
  ])('refuses %s, naming the line', async (_label, lines, withTokenizer, message) => {
    const path = await file('bad-text.jsonl', lines)
    await expect(
      readRoutingData(path, ['a', 'b'], tokenInputs, withTokenizer ? { text } : {}),
    ).rejects.toThrow(message)
  })
})
