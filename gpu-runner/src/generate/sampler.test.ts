/**
 * The sampler's penalties (issue 14, sampling as OpenAI and vLLM define it): presence and frequency penalties on
 * the tokens the completion already holds, vLLM's repetition penalty on the prompt's and the completion's, OpenAI's
 * logit bias, all before the choice (greedy here, so every pick is exact), and log-probabilities that stay the
 * model's own.
 */
import { describe, expect, it } from 'vitest'
import { logSoftmax, Sampler, type SamplingParams, sequenceRng } from './sampler.ts'

const greedy: SamplingParams = { temperature: 0, topP: 1, topK: 0 }

/** `n` greedy picks from the same row of logits (the model's row does not change: only the penalties do). */
function picks(params: Partial<SamplingParams>, row: number[], n: number, prompt: number[] = []) {
  const s = new Sampler({ ...greedy, ...params }, sequenceRng(1), prompt)
  const logits = Float32Array.from(row)
  return Array.from({ length: n }, () => s.sample(logits).id)
}

describe('Sampler penalties', () => {
  it('without penalties, greedy repeats the best token', () => {
    expect(picks({}, [2, 1.9, 0], 3)).toEqual([0, 0, 0])
  })

  it('presence: a token already sampled loses the penalty once, whatever its count', () => {
    // Once token 0 is in (2 − 0.5 = 1.5), token 1 wins (1.9); once both are in, 0 wins again (1.5 against 1.4),
    // however often it comes back.
    expect(picks({ presencePenalty: 0.5 }, [2, 1.9, 0], 4)).toEqual([0, 1, 0, 0])
    // Negative: a sampled token is favoured.
    expect(picks({ presencePenalty: -1 }, [2, 2.5, 0], 3)).toEqual([1, 1, 1])
  })

  it('frequency: the penalty grows with each time the token was sampled', () => {
    // Token 0: 3, 2.6, 2.2, 1.8 after 0–3 picks; token 1 stays at 2 until picked.
    expect(picks({ frequencyPenalty: 0.4 }, [3, 2, 0], 5)).toEqual([0, 0, 0, 1, 0])
  })

  it('repetition: a token of the prompt or the completion has a positive logit divided, a negative multiplied', () => {
    // Token 1 is in the prompt: 1.5 / 2 = 0.75 < 1.
    expect(picks({ repetitionPenalty: 2 }, [1, 1.5, -1], 1, [1])).toEqual([0])
    expect(picks({}, [1, 1.5, -1], 1, [1])).toEqual([1])
    // Negative logits: token 0 of the prompt goes from −1 to −2, below token 1's −1.5.
    expect(picks({ repetitionPenalty: 2 }, [-1, -1.5], 1, [0])).toEqual([1])
    // Sampled tokens count too: 2, then 2 / 1.5 = 1.33 < 1.8.
    expect(picks({ repetitionPenalty: 1.5 }, [2, 1.8], 2)).toEqual([0, 1])
  })

  it('logit bias: added to a token’s logit on every pick; −100 bans it, 100 forces it', () => {
    expect(picks({ logitBias: new Map([[0, -100]]) }, [2, 1.9, 0], 2)).toEqual([1, 1])
    expect(picks({ logitBias: new Map([[2, 100]]) }, [2, 1.9, 0], 2)).toEqual([2, 2])
    // A small bias reorders close logits only.
    expect(picks({ logitBias: new Map([[1, 0.2]]) }, [2, 1.9, 0], 1)).toEqual([1])
    // An id past the row is ignored (the engine refuses such a request before it gets here).
    expect(picks({ logitBias: new Map([[9, 100]]) }, [2, 1.9, 0], 1)).toEqual([0])
  })

  it('min_tokens: the end tokens cannot be picked before that many picks', () => {
    // Token 0 is the end token and the best: suppressed for two picks, then picked.
    expect(picks({ suppress: { ids: [0], picks: 2 } }, [2, 1.9, 0], 3)).toEqual([1, 1, 0])
  })

  it('log-probabilities are the model’s own, before the penalties', () => {
    const row = Float32Array.from([2, 1.9, 0])
    const s = new Sampler({ ...greedy, presencePenalty: 1, logprobs: 1 }, sequenceRng(1))
    s.sample(row)
    const second = s.sample(row)
    expect(second.id).toBe(1)
    expect(second.logprob).toBeCloseTo(logSoftmax(row)[1] as number, 12)
  })

  it('the row handed in is not changed', () => {
    const row = Float32Array.from([2, 1.9, 0])
    const s = new Sampler(
      { ...greedy, frequencyPenalty: 1, repetitionPenalty: 1.5 },
      sequenceRng(1),
      [0],
    )
    s.sample(row)
    s.sample(row)
    expect(Array.from(row)).toEqual([2, Math.fround(1.9), 0])
  })
})
