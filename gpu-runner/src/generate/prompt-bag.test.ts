import { describe, expect, it } from 'vitest'
import {
  bagFeatures,
  bagProbabilities,
  promptBagFile,
  readPromptBag,
  trainPromptBag,
} from './prompt-bag.ts'

const spec = { bigrams: 8 }

describe('bagFeatures', () => {
  it('marks each distinct id once and each hashed bigram, columns ascending, unit norm', () => {
    const f = bagFeatures([1, 3, 3, 20, 5], spec)
    const unigrams = Array.from(f.keys).filter((k) => k >= 0)
    expect(unigrams).toEqual([1, 3, 5, 20])
    const bigrams = Array.from(f.keys).filter((k) => k < 0)
    expect(bigrams.length).toBeGreaterThan(0)
    expect(bigrams.length).toBeLessThanOrEqual(4)
    expect(bigrams.every((k) => k >= -spec.bigrams)).toBe(true)
    expect(Array.from(f.keys)).toEqual([...f.keys].sort((a, b) => a - b))
    const norm = Math.hypot(...f.val)
    expect(norm).toBeCloseTo(1, 12)
  })

  it('has no features for an empty prompt', () => {
    expect(bagFeatures([], spec).keys.length).toBe(0)
  })
})

describe('trainPromptBag', () => {
  // Two classes told apart by one id each; id 1 (a BOS) in every prompt.
  const examples = [
    { ids: [1, 4, 7], y: 0 },
    { ids: [1, 4, 9], y: 0 },
    { ids: [1, 5, 7], y: 1 },
    { ids: [1, 5, 9], y: 1 },
  ]

  it('learns the ids that tell the classes apart', () => {
    const bag = trainPromptBag(examples, 2, spec, { l2: 1e-4, steps: 200 })
    expect(bagProbabilities(bag, [1, 4, 8])[0]).toBeGreaterThan(0.8)
    expect(bagProbabilities(bag, [1, 5, 8])[1]).toBeGreaterThan(0.8)
  })

  it('is deterministic: the same data gives the same weights (a rebuild is reproducible)', () => {
    const a = trainPromptBag(examples, 2, spec, { l2: 1e-4, steps: 50 })
    const b = trainPromptBag(examples, 2, spec, { l2: 1e-4, steps: 50 })
    expect(Array.from(a.weights)).toEqual(Array.from(b.weights))
    expect(Array.from(a.bias)).toEqual(Array.from(b.bias))
  })

  it('gives probabilities that sum to 1', () => {
    const bag = trainPromptBag(examples, 2, spec, { l2: 1e-4, steps: 20 })
    const p = bagProbabilities(bag, [1, 2, 3])
    expect((p[0] as number) + (p[1] as number)).toBeCloseTo(1, 12)
  })

  it('comes back from its manifest form unchanged', () => {
    const bag = trainPromptBag(examples, 2, spec, { l2: 1e-4, steps: 20 })
    const back = readPromptBag(JSON.parse(JSON.stringify(promptBagFile(bag))), 2)
    expect(Array.from(back.weights)).toEqual(Array.from(bag.weights))
    expect(Array.from(bagProbabilities(back, [1, 4, 9]))).toEqual(
      Array.from(bagProbabilities(bag, [1, 4, 9])),
    )
  })

  it('refuses a manifest bag whose sizes disagree', () => {
    const file = promptBagFile(trainPromptBag(examples, 2, spec, { l2: 1e-4, steps: 5 }))
    expect(() => readPromptBag(file, 3)).toThrow(/does not fit/)
  })
})
