/**
 * The committed text twin package (zoo/text/package) is what `npm run text:package` builds from zoo/text/recipe.yaml
 * today: the recipe it records is the recipe file, its tokenizer files are the zoo's byte for byte, its labels are
 * zoo.json's classes, and a fresh build from the recipe gives the same manifest and a twin graph that computes the
 * same outputs. (The ONNX bytes are not compared: float rounding in the SVD and the router's training differs
 * between CPUs, so a rebuild elsewhere can differ in the last bits.) Issue #13.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildPackage, createReporter } from '@twinserve/gpu-runner/build'
import { loadPackage } from '@twinserve/gpu-runner/package'
import { ort } from '@twinserve/gpu-runner/runtime'
import { encodeControls } from '@twinserve/gpu-runner/twin-contract'
import { type PackageManifest, parseRecipe } from '@twinserve/shared'
import { readTextZoo, textZooPath } from '@twinserve/zoo/text'
import { afterAll, describe, expect, it } from 'vitest'
import YAML from 'yaml'
import { REPO } from '../infra/manifests.ts'

const RECIPE = join(REPO, 'zoo/text/recipe.yaml')
const PACKAGE = join(REPO, 'zoo/text/package')
const zoo = readTextZoo(join(REPO, 'zoo/text/models'))
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex')

const root = await mkdtemp(join(tmpdir(), 'twinserve-text-package-'))
afterAll(() => rm(root, { recursive: true, force: true }))

describe('zoo/text/package', async () => {
  const committed = await loadPackage(PACKAGE)
  const m = committed.manifest

  it('records the recipe file as it is now (rebuild with `npm run text:package` if not)', () => {
    const recipe = parseRecipe(YAML.parse(readFileSync(RECIPE, 'utf8')))
    expect(JSON.stringify(m.recipe)).toBe(JSON.stringify(recipe))
  })

  it("carries the zoo's tokenizer byte for byte, its input rule, and zoo.json's labels per expert", () => {
    const t = m.tokenizer
    expect(t).toMatchObject({
      maxLength: zoo.tokenizer.max_length,
      padId: zoo.tokenizer.pad_id,
      truncation: true,
      idsInput: 'input_ids',
      maskInput: 'attention_mask',
    })
    expect(m.files[t?.file ?? '']).toBe(sha(textZooPath(zoo, zoo.tokenizer.file)))
    expect(m.files[t?.config ?? '']).toBe(sha(textZooPath(zoo, zoo.tokenizer.config)))
    expect(m.experts.map((e) => [e.name, e.labels])).toEqual(
      zoo.tasks.map((task) => [task.name, task.classes]),
    )
  })

  it('is what the recipe builds: same manifest, same outputs on the reference texts', async () => {
    const out = join(root, 'rebuilt')
    await buildPackage(RECIPE, { out, reporter: createReporter({ quiet: true }) })
    const rebuilt = await loadPackage(out)
    const comparable = (x: PackageManifest) => {
      const { createdAt: _c, files, router, exclusive, ...rest } = x
      return {
        ...rest,
        router: { ...router, heldoutAccuracy: undefined },
        exclusive: exclusive.map((e) => ({ ...e, relError: undefined })),
        tokenizerFiles: Object.entries(files).filter(([f]) => f.startsWith('tokenizer/')),
        fileNames: Object.keys(files).sort(),
      }
    }
    expect(comparable(rebuilt.manifest)).toEqual(comparable(m))
    expect(rebuilt.manifest.router.heldoutAccuracy ?? 0).toBeCloseTo(
      m.router.heldoutAccuracy ?? 0,
      2,
    )

    const ref = JSON.parse(readFileSync(textZooPath(zoo, 'reference.json'), 'utf8')) as {
      input_ids: number[][]
      attention_mask: number[][]
    }
    const B = ref.input_ids.length
    const int64 = (rows: number[][]) =>
      new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [B, 64])
    const T = m.experts.length
    // The router's own weights, and a one-hot mix of the first expert.
    const controls = [
      encodeControls(Array(B).fill({ useRouter: 1 }), T),
      encodeControls(Array(B).fill({ mixWeights: m.experts.map((_, i) => (i === 0 ? 1 : 0)) }), T),
    ]
    const outputs = async (model: Uint8Array) => {
      const s = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 })
      try {
        const got: number[][] = []
        for (const c of controls) {
          const r = await s.run({
            input_ids: int64(ref.input_ids),
            attention_mask: int64(ref.attention_mask),
            ...c,
          })
          got.push(
            Array.from(r.logits?.data as Float32Array),
            Array.from(r.expert_weights?.data as Float32Array),
          )
        }
        return got
      } finally {
        await s.release()
      }
    }
    const [want, got] = [await outputs(committed.model), await outputs(rebuilt.model)]
    want.forEach((w, k) => {
      const diff = Math.max(...w.map((v, i) => Math.abs(v - (got[k]?.[i] ?? Number.NaN))))
      expect(diff, `output ${k}`).toBeLessThan(1e-3)
    })
  }, 480_000) // a build: about a minute on the loaded 2 cores, most of it training the 3-seed router ensemble
})
