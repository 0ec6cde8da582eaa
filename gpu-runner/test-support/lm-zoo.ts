/**
 * The LM zoo as the generation tests open it (issue 14): its twin package on one CPU thread, and held-out prompts
 * spread over the domains.
 * @module
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { decodeGraph } from '../src/generate/decode-graph.ts'
import { decoderAsServed } from '../src/generate/decoder-as-served.ts'
import { DecoderGraph } from '../src/generate/decoder-graph.ts'
import type { EngineOptions } from '../src/generate/engine.ts'
import { LmProfile } from '../src/generate/lm-profile.ts'
import { mergedDecodeGraph } from '../src/generate/merged-decode-graph.ts'
import type { MergedDecoder } from '../src/generate/merged-mixes.ts'
import { withoutNewKv } from '../src/generate/new-kv-outputs.ts'
import { loadPackage } from '../src/package/load-package.ts'
import { openSession, ort } from '../src/runtime/ort-session.ts'
import { checkContract } from '../src/twin-contract/check-contract.ts'
import { encodeControls, type RowControls } from '../src/twin-contract/encode-controls.ts'

export const LM_ZOO = join(import.meta.dirname, '../../zoo/lm')

/** zoo/lm/package's twin graph as built (not rewritten), its expert count and the zoo's tokenizer profile. */
export async function lmTwinGraph() {
  const pkg = await loadPackage(join(LM_ZOO, 'package'))
  const { session } = await openSession(pkg.model, { provider: 'cpu', threads: 1 })
  const controls = checkContract(pkg.manifest, session, new Map())
  const T = pkg.manifest.experts.length
  const graph = new DecoderGraph(session, controls, T)
  const profile = await LmProfile.load(join(LM_ZOO, 'models'))
  return { pkg, T, graph, profile }
}

/** The first `perDomain` validation prompts of each domain (zoo/lm/data/prompts.jsonl), as the profile encodes them. */
export function validationPrompts(profile: LmProfile, perDomain: number): number[][] {
  const seen = new Map<string, number>()
  return readFileSync(join(LM_ZOO, 'data/prompts.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { split: string; domain: string; prompt: string })
    .filter((p) => {
      if (p.split !== 'validation') return false
      const n = seen.get(p.domain) ?? 0
      seen.set(p.domain, n + 1)
      return n < perDomain
    })
    .map((p) => profile.encodePrompt(p.prompt))
}

/**
 * The feeds of one pass of zoo/lm's decoder (3 layers, 4 heads of 32): every row the same `input` ids after `past`
 * cached positions, each row under its own controls, the past taken from a previous pass's `present` outputs (none:
 * an empty past).
 */
export function lmPassFeeds(
  rows: readonly RowControls[],
  input: readonly number[],
  past: number,
  controls: Parameters<typeof encodeControls>[2],
  pastKv?: Record<string, ort.Tensor>,
): Record<string, ort.Tensor> {
  const B = rows.length
  const seq = input.length
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(rows.flatMap(() => input.map(BigInt))), [
      B,
      seq,
    ]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(B * (past + seq)).fill(1n), [
      B,
      past + seq,
    ]),
    position_ids: new ort.Tensor(
      'int64',
      BigInt64Array.from(rows.flatMap(() => input.map((_, s) => BigInt(past + s)))),
      [B, seq],
    ),
    ...encodeControls(rows, 5, controls),
  }
  for (let l = 0; l < 3; l++)
    for (const kv of ['key', 'value'])
      feeds[`past_key_values.${l}.${kv}`] =
        pastKv?.[`present.${l}.${kv}`] ??
        new ort.Tensor('float32', new Float32Array(0), [B, 4, 0, 32])
  return feeds
}

/**
 * zoo/lm/package as the runner decodes it, on one CPU thread: the factored decode graph's session, the merged decode
 * graph (its rewrite and its two sessions, without baking), the twin controls, and two validation prompts a domain.
 */
export async function lmMergedDecode() {
  const opts = { provider: 'cpu' as const, threads: 1 }
  const pkg = await loadPackage(join(LM_ZOO, 'package'))
  const T = pkg.manifest.experts.length
  const served = decoderAsServed(pkg.model)
  const factoredBytes = decodeGraph(served)
  if (!('bytes' in factoredBytes)) throw new Error(factoredBytes.unavailable)
  const merged = mergedDecodeGraph(served, T)
  if (!('decode' in merged)) throw new Error(merged.unavailable)
  const factored = (await openSession(factoredBytes.bytes, opts)).session
  const decoder: MergedDecoder = {
    decode: (await openSession(merged.decode, opts)).session,
    merge: (await openSession(merged.merge, opts)).session,
    matrices: merged.matrices,
  }
  const controls = checkContract(pkg.manifest, withoutNewKv(factored), new Map())
  const profile = await LmProfile.load(join(LM_ZOO, 'models'))
  return { pkg, T, merged, factored, decoder, controls, prompts: validationPrompts(profile, 2) }
}

/** One-hot, dense and zero (the shared model): the mixes the merged and baked decode tests check. */
export const LM_TEST_MIXES = [
  [0, 0, 1, 0, 0],
  [0.1, 0.3, 0.05, 0.4, 0.15],
  [0, 0, 0, 0, 0],
]

/** A small engine over zoo/lm for the generation tests: 16 sequences, 64 MiB of KV cache. */
export const LM_TEST_ENGINE: EngineOptions = {
  maxContext: 256,
  maxSequences: 16,
  maxBytes: 64 * 1024 * 1024,
  prefillTokensPerStep: 64,
}

/** The largest absolute difference between two float32 outputs of the same shape. */
export function tensorMaxAbsDiff(a: ort.Tensor | undefined, b: ort.Tensor | undefined): number {
  const x = a?.data as Float32Array
  const y = b?.data as Float32Array
  if (x.length !== y.length) throw new Error(`outputs of ${x.length} and ${y.length} values`)
  let m = 0
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs((x[i] as number) - (y[i] as number)))
  return m
}
