/**
 * The data-free router (issue #18) on the Fashion zoo (zoo/fashion/models), with the exclusive knowledge under a
 * byte budget: the router is built from the stored factors alone (the routing file below only verifies the
 * package and reports), and a clearly task-specific input, a pixel-permuted image, is routed to the `permuted`
 * expert. How well it routes overall is measured by `npm run bench:quality` (frontier table), not here.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { buildPackage, createReporter } from '@twinserve/gpu-runner/build'
import { ort } from '@twinserve/gpu-runner/runtime'
import { encodeControls } from '@twinserve/gpu-runner/twin-contract'
import { loadTaskSplit, routingLine } from '@twinserve/zoo/fashion'
import { afterAll, describe, expect, it } from 'vitest'

const ZOO = resolve(import.meta.dirname, '../../zoo/fashion/models')
const TASKS = ['original', 'inverted', 'rotated', 'permuted', 'blur-noise', 'digits']
const root = await mkdtemp(join(tmpdir(), 'twinserve-data-free-'))
afterAll(() => rm(root, { recursive: true, force: true }))

describe('router.kind data-free on the Fashion zoo', async () => {
  // A few training images per task, for the build's verification and held-out report only.
  const lines: string[] = []
  for (const t of TASKS) {
    const s = loadTaskSplit(t, 'train', { limit: 12 })
    for (let i = 0; i < s.n; i++) lines.push(routingLine(t, s.x.subarray(i * 784, (i + 1) * 784)))
  }
  await writeFile(join(root, 'routing.jsonl'), `${lines.join('\n')}\n`)
  const recipe = join(root, 'recipe.json')
  await writeFile(
    recipe,
    JSON.stringify({
      name: 'fashion-data-free',
      base: join(ZOO, 'base.onnx'),
      experts: TASKS.map((t) => ({ name: t, model: join(ZOO, 'experts', `${t}.onnx`) })),
      shared_file: false,
      exclusive: { budget: 0.1, dtype: 'float16' },
      router: { data: 'routing.jsonl', kind: 'data-free', feature: 'pixels' },
      verify: { examples_per_expert: 2 },
    }),
  )
  const out = join(root, 'pkg')
  const report = await buildPackage(recipe, { out, reporter: createReporter({ quiet: true }) })

  it('builds from the factors of the matrix reading the feature, ranks allocated per expert', () => {
    expect(report.manifest.router).toMatchObject({ kind: 'data-free', feature: 'pixels' })
    const fc1 = report.exclusive.find((r) => r.name === 'fc1.weight')?.ranks ?? []
    expect(fc1).toHaveLength(TASKS.length)
    expect(Math.min(...fc1)).toBeGreaterThan(0)
    expect(report.verification.routerAgreement).toBeGreaterThanOrEqual(0.99)
  })

  it('routes pixel-permuted test images to the permuted expert', async () => {
    const test = loadTaskSplit('permuted', 'test', { limit: 40 })
    const twin = await ort.InferenceSession.create(join(out, 'model.onnx'))
    try {
      const res = await twin.run({
        pixels: new ort.Tensor('float32', test.x, [test.n, 784]),
        ...encodeControls(Array(test.n).fill({ useRouter: 1 }), TASKS.length),
      })
      const w = res.expert_weights?.data as Float32Array
      let routed = 0
      for (let i = 0; i < test.n; i++) {
        const row = Array.from(w.subarray(i * TASKS.length, (i + 1) * TASKS.length))
        if (row.indexOf(Math.max(...row)) === TASKS.indexOf('permuted')) routed++
      }
      expect(routed / test.n).toBeGreaterThanOrEqual(0.9)
    } finally {
      await twin.release()
    }
  })
})
