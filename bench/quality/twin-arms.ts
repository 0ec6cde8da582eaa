/**
 * Twin packages for the quality report, built by `twinserve build` (buildPackage) from the demo recipe with
 * one setting changed at a time, and measured under each routing mode: the trained router (dense, as
 * Twin-Merging mixes), its top-2, the prototype router (a separate build: the router is part of the graph), and
 * an oracle one-hot router (the true task: the compression's cost alone).
 * @see https://arxiv.org/abs/2406.15479 (Twin-Merging)
 * @module
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { type BuildReport, buildPackage, createReporter } from '@twinserve/gpu-runner/build'
import { loadPackage } from '@twinserve/gpu-runner/package'
import type { RecipeInput } from '@twinserve/shared'
import YAML from 'yaml'
import { type Accuracy, evaluate, openCpu, type RoutingMode, type TaskData } from './evaluate.ts'

/** The demo recipe with every path made absolute, so that copies can be written anywhere. */
export async function readRecipe(path: string): Promise<RecipeInput> {
  const abs = resolve(path)
  const dir = dirname(abs)
  const r = YAML.parse(await readFile(abs, 'utf8')) as RecipeInput
  return {
    ...r,
    base: resolve(dir, r.base),
    experts: r.experts.map((e) => ({ ...e, model: resolve(dir, e.model) })),
    router: { ...r.router, data: resolve(dir, r.router.data) },
    ...(r.tokenizer
      ? {
          tokenizer: {
            ...r.tokenizer,
            file: resolve(dir, r.tokenizer.file),
            ...(r.tokenizer.config ? { config: resolve(dir, r.tokenizer.config) } : {}),
          },
        }
      : {}),
  }
}

/** A recipe change: top-level keys replace, `router` keys merge into the recipe's router. */
export interface RecipeChange {
  exclusive?: RecipeInput['exclusive']
  shared?: RecipeInput['shared']
  shared_file?: boolean
  shared_dtype?: RecipeInput['shared_dtype']
  router?: Partial<RecipeInput['router']>
  variants?: RecipeInput['variants']
}

export function applyChange(recipe: RecipeInput, change: RecipeChange): RecipeInput {
  const { router, ...rest } = change
  return { ...recipe, ...rest, router: { ...recipe.router, ...(router ?? {}) } }
}

export interface BuiltArm {
  report: BuildReport
  /** The twin graph's bytes. */
  model: Uint8Array
}

/** Builds packages into a temporary directory that `close()` removes. */
export class ArmBuilder {
  private constructor(private readonly dir: string) {}
  private count = 0

  static async open(): Promise<ArmBuilder> {
    return new ArmBuilder(await mkdtemp(join(tmpdir(), 'twinserve-quality-')))
  }

  /** Writes `recipe` into the directory; where it is, and where its package should go. */
  async write(recipe: RecipeInput): Promise<{ path: string; out: string }> {
    const n = this.count++
    const path = join(this.dir, `recipe-${n}.yaml`)
    await writeFile(path, YAML.stringify(recipe))
    return { path, out: join(this.dir, `pkg-${n}`) }
  }

  async build(recipe: RecipeInput): Promise<BuiltArm> {
    const { path, out } = await this.write(recipe)
    const report = await buildPackage(path, { out, reporter: createReporter({ quiet: true }) })
    const model = (await loadPackage(out)).model
    await rm(out, { recursive: true, force: true })
    return { report, model }
  }

  async close(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true })
  }
}

/** Accuracy of a twin graph under each routing mode, one session for all of them. */
export async function evaluateTwin(
  model: Uint8Array,
  experts: number,
  data: readonly TaskData[],
  modes: readonly RoutingMode[],
): Promise<Accuracy[]> {
  const session = await openCpu(model)
  try {
    const out: Accuracy[] = []
    for (const mode of modes) out.push(await evaluate(session, data, { experts, mode }))
    return out
  } finally {
    await session.release()
  }
}
