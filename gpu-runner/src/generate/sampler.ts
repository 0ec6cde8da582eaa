/**
 * Picks the next token from a row of logits: the penalties first, then greedy at temperature 0 (the lowest id wins a
 * tie, so it is deterministic), otherwise temperature, then top-k, then top-p (nucleus) over what is left, drawn
 * with a seeded sfc32 stream (merge/rng.ts): the same seed and parameters give the same tokens. Log-probabilities,
 * when asked for, are the model's own (log-softmax of the raw logits, before penalties, temperature and
 * truncation), as OpenAI reports.
 *
 * Penalties, on the tokens seen so far, as OpenAI and vLLM define them:
 * - presence and frequency (OpenAI): logit[j] −= presence · [c_j > 0] + frequency · c_j, c_j the times token j was
 *   sampled in this completion;
 * - repetition (vLLM's extension, CTRL's rule): a token in the prompt or the completion has its logit divided by
 *   the penalty when positive, multiplied when negative;
 * - logit bias (OpenAI): a fixed amount added to chosen tokens' logits (−100 bans a token in practice, 100 forces
 *   it);
 * - min_tokens (vLLM): the end tokens cannot be picked before that many tokens.
 * @module
 */
import { createRng, type Rng } from '../merge/rng.ts'

export interface SamplingParams {
  /** 0: greedy. */
  temperature: number
  /** 1: no nucleus truncation. */
  topP: number
  /** 0: no top-k truncation. */
  topK: number
  /** Absent: a fresh random seed per sequence. */
  seed?: number
  /** How many most likely tokens to report with each chosen one; absent: no log-probabilities. */
  logprobs?: number
  /** OpenAI's presence penalty (−2 to 2); absent or 0: none. */
  presencePenalty?: number
  /** OpenAI's frequency penalty (−2 to 2); absent or 0: none. */
  frequencyPenalty?: number
  /** vLLM's repetition penalty (> 0); absent or 1: none. */
  repetitionPenalty?: number
  /** OpenAI's logit bias: added to these tokens' logits on every pick. */
  logitBias?: ReadonlyMap<number, number>
  /** vLLM's min_tokens: these ids (the end tokens) cannot be picked in the first `picks` picks. */
  suppress?: { ids: readonly number[]; picks: number }
}

export interface TokenChoice {
  id: number
  /** log p(id) under the model, when log-probabilities were asked for. */
  logprob?: number
  /** The `logprobs` most likely tokens and their log-probabilities, most likely first. */
  top?: { id: number; logprob: number }[]
}

/** A stream per sequence: seeds beyond 32 bits still differ (the full seed is one of the stream's keys). */
export function sequenceRng(seed: number): Rng {
  return createRng(seed >>> 0, 'generate', String(seed))
}

function argmax(v: Float32Array): number {
  let best = 0
  for (let i = 1; i < v.length; i++) if ((v[i] as number) > (v[best] as number)) best = i
  return best
}

/** log-softmax of a row, in float64. */
export function logSoftmax(v: Float32Array): Float64Array {
  let max = Number.NEGATIVE_INFINITY
  for (const x of v) if (x > max) max = x
  let sum = 0
  for (const x of v) sum += Math.exp(x - max)
  const lse = max + Math.log(sum)
  return Float64Array.from(v, (x) => x - lse)
}

/** Ids of the k largest values, largest first (ties: lower id first). */
function topIds(v: ArrayLike<number>, k: number): number[] {
  const ids = Array.from({ length: v.length }, (_, i) => i)
  ids.sort((a, b) => (v[b] as number) - (v[a] as number) || a - b)
  return ids.slice(0, k)
}

export class Sampler {
  /** Times each token was sampled in this completion (the presence and frequency penalties'). */
  private readonly counts = new Map<number, number>()
  /** Tokens picked so far (min_tokens'). */
  private picks = 0
  /** Tokens of the prompt and the completion (the repetition penalty's). */
  private readonly seen: Set<number>
  private readonly penalised: boolean

  /** @param prompt the prompt's ids, which the repetition penalty counts as seen */
  constructor(
    private readonly params: SamplingParams,
    private readonly rng: Rng,
    prompt: readonly number[] = [],
  ) {
    const repetition = (params.repetitionPenalty ?? 1) !== 1
    this.penalised =
      repetition ||
      (params.presencePenalty ?? 0) !== 0 ||
      (params.frequencyPenalty ?? 0) !== 0 ||
      (params.logitBias?.size ?? 0) > 0 ||
      (params.suppress?.picks ?? 0) > 0
    this.seen = new Set(repetition ? prompt : [])
  }

  sample(logits: Float32Array): TokenChoice {
    const scores = this.penalised ? this.penalise(logits) : logits
    const id = this.params.temperature === 0 ? argmax(scores) : this.draw(scores)
    this.picks++
    if (this.penalised) {
      this.counts.set(id, (this.counts.get(id) ?? 0) + 1)
      if ((this.params.repetitionPenalty ?? 1) !== 1) this.seen.add(id)
    }
    if (this.params.logprobs === undefined) return { id }
    const lp = logSoftmax(logits)
    return {
      id,
      logprob: lp[id] as number,
      top: topIds(lp, this.params.logprobs).map((t) => ({ id: t, logprob: lp[t] as number })),
    }
  }

  /** A copy of the row with the penalties applied to the tokens seen so far. */
  private penalise(logits: Float32Array): Float32Array {
    const out = Float32Array.from(logits)
    const rep = this.params.repetitionPenalty ?? 1
    if (rep !== 1)
      for (const j of this.seen) {
        const x = out[j]
        if (x !== undefined) out[j] = x > 0 ? x / rep : x * rep
      }
    const presence = this.params.presencePenalty ?? 0
    const frequency = this.params.frequencyPenalty ?? 0
    for (const [j, c] of this.counts) {
      const x = out[j]
      if (x !== undefined) out[j] = x - presence - frequency * c
    }
    for (const [j, bias] of this.params.logitBias ?? []) {
      const x = out[j]
      if (x !== undefined) out[j] = x + bias
    }
    const suppress = this.params.suppress
    if (suppress && this.picks < suppress.picks)
      for (const j of suppress.ids) if (j < out.length) out[j] = Number.NEGATIVE_INFINITY
    return out
  }

  private draw(logits: Float32Array): number {
    const { temperature, topK, topP } = this.params
    const V = logits.length
    // Candidates in order: every id when nothing truncates (no sort needed), else most likely first.
    const truncates = (topK > 0 && topK < V) || topP < 1
    const ids = truncates ? topIds(logits, topK > 0 ? Math.min(topK, V) : V) : undefined
    const n = ids?.length ?? V
    const at = (i: number) => (ids ? (ids[i] as number) : i)
    let max = Number.NEGATIVE_INFINITY
    for (let i = 0; i < n; i++) max = Math.max(max, (logits[at(i)] as number) / temperature)
    const p = new Float64Array(n)
    let sum = 0
    for (let i = 0; i < n; i++) {
      p[i] = Math.exp((logits[at(i)] as number) / temperature - max)
      sum += p[i] as number
    }
    let keep = n
    if (topP < 1) {
      // The smallest most-likely-first prefix whose mass reaches top_p (always at least one token).
      let mass = 0
      for (let i = 0; i < n; i++) {
        mass += (p[i] as number) / sum
        if (mass >= topP) {
          keep = i + 1
          break
        }
      }
      sum = 0
      for (let i = 0; i < keep; i++) sum += p[i] as number
    }
    let u = this.rng.uniform() * sum
    for (let i = 0; i < keep; i++) {
      u -= p[i] as number
      if (u < 0) return at(i)
    }
    return at(keep - 1)
  }
}
