/**
 * `router.prompt_likelihood.bag` (issue 14): the builder trains the bag-of-ids prompt classifier on the routing data
 * and writes it in the manifest, where the runner reads it back; two builds give the same weights. Three of the LM
 * zoo's decoders and 40 of its routing prompts per expert.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { argmax, bagProbabilities, readPromptBag } from '../../generate/prompt-bag.ts'
import { loadPackage } from '../../package/load-package.ts'
import { buildPackage } from '../build-package.ts'
import { createReporter } from './progress.ts'

const LM = resolve(import.meta.dirname, '../../../../zoo/lm')
const EXPERTS = ['emails', 'speeches', 'fiction']
const root = await mkdtemp(join(tmpdir(), 'twinserve-bag-'))
afterAll(() => rm(root, { recursive: true, force: true }))

describe('router.prompt_likelihood.bag in the package', async () => {
  const lines = (await readFile(join(LM, 'data/routing.jsonl'), 'utf8')).split('\n').filter(Boolean)
  const picked = EXPERTS.flatMap((e) =>
    lines.filter((l) => (JSON.parse(l) as { expert: string }).expert === e).slice(0, 40),
  )
  await writeFile(join(root, 'routing.jsonl'), `${picked.join('\n')}\n`)
  const recipe = [
    'name: lm-bag-test',
    `base: ${join(LM, 'models/base.onnx')}`,
    'experts:',
    ...EXPERTS.map((e) => `  - { name: ${e}, model: ${join(LM, 'models/experts', `${e}.onnx`)} }`),
    'exclusive: { rank: 4 }',
    'router:',
    `  data: ${join(root, 'routing.jsonl')}`,
    '  epochs: 2',
    '  prompt_likelihood: { temperature: 2, bag: { skip_above: 0.9, steps: 100 } }',
    'verify: { examples_per_expert: 1 }',
  ].join('\n')
  await writeFile(join(root, 'recipe.yaml'), recipe)
  const build = async (name: string) => {
    const out = join(root, name)
    await buildPackage(join(root, 'recipe.yaml'), {
      out,
      reporter: createReporter({ quiet: true }),
    })
    return (await loadPackage(out)).manifest
  }
  const first = await build('a')
  const second = await build('b')

  it('writes the classifier the runner reads, trained on the routing data', () => {
    const bag = first.router.promptLikelihood?.bag
    expect(bag?.skipAbove).toBe(0.9)
    expect(bag?.bigrams).toBe(4096)
    const model = readPromptBag(bag as NonNullable<typeof bag>, EXPERTS.length)
    // It fits its training prompts: most land on their own expert.
    let right = 0
    for (const l of picked) {
      const r = JSON.parse(l) as { expert: string; inputs: { input_ids: number[] } }
      if (argmax(bagProbabilities(model, r.inputs.input_ids)) === EXPERTS.indexOf(r.expert)) right++
    }
    expect(right / picked.length).toBeGreaterThan(0.9)
  })

  it('is deterministic: a rebuild writes the same weights', () => {
    expect(second.router.promptLikelihood?.bag).toEqual(first.router.promptLikelihood?.bag)
  })
}, 120_000)
