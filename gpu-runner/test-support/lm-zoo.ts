/**
 * The LM zoo as the generation tests open it (issue 14): its twin package on one CPU thread, and held-out prompts
 * spread over the domains.
 * @module
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DecoderGraph } from '../src/generate/decoder-graph.ts'
import { LmProfile } from '../src/generate/lm-profile.ts'
import { loadPackage } from '../src/package/load-package.ts'
import { openSession } from '../src/runtime/ort-session.ts'
import { checkContract } from '../src/twin-contract/check-contract.ts'

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
