/**
 * Paths and readers for the committed LM zoo (issue 14): its tokenizer, data splits, fixtures and zoo.json. The
 * zoo is made once by tooling/make_zoo.py; these readers need no Python.
 * @module
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'

/** zoo/lm: the paths in zoo.json are relative to it. */
export const LM_ZOO_DIR = join(import.meta.dirname, '..')

export const LM_ZOO_DOMAINS = ['emails', 'speeches', 'fiction', 'fortunes', 'names'] as const
export type LmZooDomain = (typeof LM_ZOO_DOMAINS)[number]

export function lmZooPath(...parts: string[]): string {
  return join(LM_ZOO_DIR, ...parts)
}

export function readLmZooJson<T>(...parts: string[]): T {
  return JSON.parse(readFileSync(lmZooPath(...parts), 'utf8')) as T
}

/** One held-out document: `prompt` is its beginning, for routing. */
export interface LmZooDoc {
  id: string
  source: string
  text: string
  prompt: string
}

export function readLmZooSplit(domain: LmZooDomain, split: 'validation' | 'test'): LmZooDoc[] {
  return readFileSync(lmZooPath('data', domain, `${split}.jsonl`), 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as LmZooDoc)
}

/**
 * The zoo's tokenizer as a runner loads it: tokenizer.json plus tokenizer_config.json (which turns off
 * clean_up_tokenization_spaces; tokenizers.js defaults it on, and that makes decoding lossy).
 */
export function loadLmZooTokenizer(): Tokenizer {
  return new Tokenizer(
    readLmZooJson('models', 'tokenizer.json'),
    readLmZooJson('models', 'tokenizer_config.json'),
  )
}

/** The part of models/zoo.json that TypeScript reads (the file has more: sources, splits, training). */
export interface LmZooManifest {
  tokenizer: {
    file: string
    config: string
    specialTokens: Record<string, number>
    bosTokenId: number
    eosTokenId: number
    padTokenId: number
  }
  model: {
    vocabSize: number
    layers: number
    heads: number
    headDim: number
    maxContext: number
    tiedWeights: { initializer: string; consumers: string[] }[]
  }
  onnx: { inputs: { name: string }[]; outputs: { name: string }[] }
  models: Record<string, { file: string; bytes: number; sha256: string }>
  serving: { stopTokenIds: number[]; maxContext: number }
  chatTemplate: {
    bos: string
    messageTemplate: string
    generationPrompt: string
    stop: string[]
    example: string
  }
  perplexity: { table: Record<string, Record<LmZooDomain, number>> }
}

export function readLmZooManifest(): LmZooManifest {
  return readLmZooJson<LmZooManifest>('models', 'zoo.json')
}

/** The chat template rendered by plain substitution, as zoo.json describes it (encode without special tokens). */
export function renderLmZooChat(
  template: LmZooManifest['chatTemplate'],
  messages: readonly { role: string; content: string }[],
): string {
  const body = messages
    .map((m) => template.messageTemplate.replace('{role}', m.role).replace('{content}', m.content))
    .join('')
  return template.bos + body + template.generationPrompt
}
