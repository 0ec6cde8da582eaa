/**
 * What `twinserve build` cannot handle, it refuses (issue #13): a clear message naming the file or tensor and why,
 * an INVALID_MODEL / INVALID_REQUEST code (the 4xx side of the error table), exit status 1, and no package and no
 * staging directory left behind. Run through the real CLI entry in a child process.
 */
import { execFile } from 'node:child_process'
import {
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { xorshift32 } from '@twinserve/gpu-runner/build'
import { GraphBuilder, onnx } from '@twinserve/gpu-runner/onnx'
import { afterAll, describe, expect, it } from 'vitest'

const HERE = fileURLToPath(new URL('.', import.meta.url))
const FIXTURES = join(HERE, '..', 'fixtures', 'pytorch')
const BIN = resolve(HERE, '..', '..', 'gpu-runner', 'bin', 'twinserve.mjs')
const EXPERTS = ['expert-1', 'expert-2', 'expert-3']
const root = await mkdtemp(join(tmpdir(), 'twinserve-refusals-'))
afterAll(() => rm(root, { recursive: true, force: true }))

async function twinserve(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const { stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], {
      env: { ...process.env, CI: '1' },
    })
    return { code: 0, stderr }
  } catch (err) {
    const e = err as { code: number; stderr: string }
    return { code: e.code, stderr: e.stderr }
  }
}

/** Routing data of random values: integer ids for int inputs, floats for float inputs. */
async function routing(
  path: string,
  inputs: Record<string, 'ids' | 'mask' | 'float'>,
  size: number,
) {
  const next = xorshift32(5)
  const lines = EXPERTS.flatMap((expert) =>
    Array.from({ length: 10 }, () => {
      const row: Record<string, number[]> = {}
      for (const [name, kind] of Object.entries(inputs))
        row[name] = Array.from({ length: size }, () =>
          kind === 'mask' ? 1 : kind === 'ids' ? Math.floor(next() * 48) : next(),
        )
      return JSON.stringify({ expert, inputs: row })
    }),
  )
  await writeFile(path, `${lines.join('\n')}\n`)
}

/**
 * Builds `name` from models in `dir` (base.onnx, expert-N.onnx) with `extra` recipe fields (`router` merged into
 * the test's router block); expects exit 1 with
 * `message` and nothing left in the output's parent but what was there.
 */
async function expectRefused(
  name: string,
  dir: string,
  inputs: Record<string, 'ids' | 'mask' | 'float'>,
  extra: Record<string, unknown>,
  message: RegExp,
) {
  const parent = join(root, `${name}-out`)
  await mkdir(parent)
  const data = join(root, `${name}.jsonl`)
  await routing(data, inputs, 'x' in inputs ? 4 : 6)
  const recipe = join(root, `${name}.json`)
  await writeFile(
    recipe,
    JSON.stringify({
      name,
      base: join(dir, 'base.onnx'),
      experts: EXPERTS.map((e) => ({ name: e, model: join(dir, `${e}.onnx`) })),
      exclusive: { rank: 4 },
      ...extra,
      // The routing data is this test's; `extra.router` adds router fields beside it.
      router: { data, epochs: 2, ...(extra.router as Record<string, unknown> | undefined) },
    }),
  )
  const r = await twinserve(['build', recipe, '--out', join(parent, 'pkg'), '--quiet'])
  expect(r.code, r.stderr).toBe(1)
  expect(r.stderr).toMatch(message)
  expect(r.stderr).not.toMatch(/unexpected error|INTERNAL/)
  expect(await readdir(parent)).toEqual([])
}

/** Copies a fixture set with each model's default opset set to `opset` (a model older than the builder reads). */
async function withOpset(from: string, to: string, opset: number): Promise<void> {
  await mkdir(to, { recursive: true })
  for (const m of ['base', ...EXPERTS]) {
    const model = onnx.ModelProto.decode(await readFile(join(from, `${m}.onnx`)))
    model.opsetImport = [{ domain: '', version: opset }]
    await writeFile(join(to, `${m}.onnx`), onnx.ModelProto.encode(model).finish())
  }
}

/** x [batch, 4] → MatMul → ReduceMean over the batch → MatMul W2 → added to MatMul(x, W3): W2's rows are mixed. */
async function rowsMixingModels(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true })
  for (const [i, m] of ['base', ...EXPERTS].entries()) {
    const next = xorshift32(100 + i)
    const w = (n: number) => Float32Array.from({ length: n }, () => next() - 0.5)
    const g = new GraphBuilder('mix')
      .input('x', 'float', ['batch', 4])
      .output('logits', 'float', ['batch', 4])
      .float('W1', w(32), [4, 8])
      .float('W2', w(32), [8, 4])
      .float('W3', w(16), [4, 4])
    const h = g.node('MatMul', ['x', 'W1'])
    const mean = g.node('ReduceMean', [h], {
      attrs: { axes: [0], keepdims: 1 },
      name: 'batch_mean',
    })
    const y = g.node('MatMul', [mean, 'W2'], { outputs: ['pooled_out'] })
    const z = g.node('MatMul', ['x', 'W3'])
    g.node('Add', [z, y], { outputs: ['logits'] })
    await writeFile(join(dir, `${m}.onnx`), g.build())
  }
}

const ENCODER = { input_ids: 'ids', attention_mask: 'mask' } as const

describe('twinserve build refuses what it cannot handle, cleanly', () => {
  it('a model older than opset 9', async () => {
    const dir = join(root, 'opset8')
    await withOpset(join(FIXTURES, 'encoder', 'opset9'), dir, 8)
    await expectRefused(
      'opset8',
      dir,
      ENCODER,
      {},
      /uses ONNX opset 8; the builder reads opsets 9 and newer .*\[INVALID_MODEL\]/,
    )
  })

  it('router.prompt_likelihood on a model that is not a decoder with a KV cache (#14)', async () => {
    await expectRefused(
      'likelihood-encoder',
      join(FIXTURES, 'encoder'),
      ENCODER,
      { router: { prompt_likelihood: { temperature: 2 } } },
      /router\.prompt_likelihood routes a decoder's generations: .*the base's inputs are input_ids, attention_mask.*\[INVALID_REQUEST\]/,
    )
  })

  it('router.prompt_likelihood.log_prior without one value per expert (#14)', async () => {
    // Three of the LM zoo's decoders (KV cache), linked under the names the test's recipe uses.
    const dir = join(root, 'lm-decoders')
    await mkdir(dir)
    const lm = resolve(HERE, '..', '..', 'zoo', 'lm', 'models')
    await symlink(join(lm, 'base.onnx'), join(dir, 'base.onnx'))
    for (const [i, d] of ['emails', 'speeches', 'fiction'].entries())
      await symlink(join(lm, 'experts', `${d}.onnx`), join(dir, `expert-${i + 1}.onnx`))
    await expectRefused(
      'likelihood-prior',
      dir,
      { input_ids: 'ids' },
      { router: { prompt_likelihood: { temperature: 2, log_prior: [0, 0.5] } } },
      /router\.prompt_likelihood\.log_prior has 2 values; it needs one per expert \(3, in the recipe's order\).*\[INVALID_REQUEST\]/,
    )
  })

  it('a tensor whose rows are mixed across the batch, named with the op that mixes them', async () => {
    const dir = join(root, 'mixing')
    await rowsMixingModels(dir)
    await expectRefused(
      'mixing',
      dir,
      { x: 'float' },
      {},
      /cannot track the batch axis of tensor 'pooled_out' .*ReduceMean node 'batch_mean' reduces over the batch's axis.*\[INVALID_MODEL\]/,
    )
  })

  it('top-k gather where an exporter put the batch inside [seq·batch, d]', async () => {
    await expectRefused(
      'decoder-topk',
      join(FIXTURES, 'decoder'),
      { input_ids: 'ids' },
      { exclusive: { rank: 4, topk_gather: 2 } },
      /exclusive\.topk_gather: the output '.*' of a use of '.*out_proj\.weight' has the batch flattened inside axis 0 .*\[INVALID_REQUEST\]/,
    )
  })

  it('a router feature without a batch axis', async () => {
    await expectRefused(
      'feature',
      join(FIXTURES, 'encoder'),
      ENCODER,
      { router: { data: join(root, 'feature.jsonl'), epochs: 2, feature: '/pos/Gather_output_0' } },
      /router feature '\/pos\/Gather_output_0' must have the batch on an axis .*no batch axis.*\[INVALID_REQUEST\]/,
    )
  })

  it('an external data file that is missing', async () => {
    const dir = join(root, 'external')
    await mkdir(dir)
    await copyFile(join(FIXTURES, 'external-data', 'base.onnx'), join(dir, 'base.onnx'))
    for (const e of EXPERTS)
      await copyFile(join(FIXTURES, 'encoder', `${e}.onnx`), join(dir, `${e}.onnx`))
    await expectRefused(
      'external',
      dir,
      ENCODER,
      {},
      /base\.onnx: initializer '.*': external data file 'base\.onnx\.data' is missing \[INVALID_MODEL\]/,
    )
  })
})
