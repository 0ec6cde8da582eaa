/**
 * Paths and readers for the committed LM zoo (zoo/lm, issue 14): its tokenizer, data splits, fixtures and
 * zoo.json. The zoo is made once by zoo/lm/scripts/make_zoo.py; these readers need no Python.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'

export const ZOO_LM_DIR = join(import.meta.dirname, '..', '..', 'zoo', 'lm')

export const ZOO_LM_DOMAINS = ['emails', 'speeches', 'fiction', 'fortunes', 'names'] as const
export type ZooLmDomain = (typeof ZOO_LM_DOMAINS)[number]

export function zooLmPath(...parts: string[]): string {
  return join(ZOO_LM_DIR, ...parts)
}

export function readZooJson<T>(...parts: string[]): T {
  return JSON.parse(readFileSync(zooLmPath(...parts), 'utf8')) as T
}

export interface ZooDoc {
  id: string
  source: string
  text: string
  prompt: string
}

export function readSplit(domain: ZooLmDomain, split: 'validation' | 'test'): ZooDoc[] {
  return readFileSync(zooLmPath('data', domain, `${split}.jsonl`), 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as ZooDoc)
}

/** The package's tokenizer as the runner loads it: tokenizer.json plus tokenizer_config.json. */
export function loadZooTokenizer(): Tokenizer {
  return new Tokenizer(readZooJson('tokenizer.json'), readZooJson('tokenizer_config.json'))
}

/** Subset of zoo/lm/zoo.json that the tests read. */
export interface ZooManifest {
  tokenizer: {
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
  chatTemplate: { bos: string; messageTemplate: string; generationPrompt: string; example: string }
  perplexity: { table: Record<string, Record<ZooLmDomain, number>> }
}

export function readZooManifest(): ZooManifest {
  return readZooJson<ZooManifest>('zoo.json')
}

/** zoo.json's chat template rendered by plain substitution, as the runner is meant to render it. */
export function renderChat(
  template: ZooManifest['chatTemplate'],
  messages: { role: string; content: string }[],
): string {
  const body = messages
    .map((m) => template.messageTemplate.replace('{role}', m.role).replace('{content}', m.content))
    .join('')
  return template.bos + body + template.generationPrompt
}
