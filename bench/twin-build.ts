/**
 * `npm run bench:twin-build`: builds the demo twin package from the zoo under several configurations (side by
 * side, one process) and measures, on every task's TEST split (never seen by the zoo's training, the router's
 * training or its selection):
 * - the experts, the base, the static `shared` (task arithmetic λ=0.3) and `ties` variants;
 * - the twin graph with oracle one-hot weights (the compression's cost alone) and with its own router
 *   (route → merge → infer in one run, what serving does by default);
 * plus the router's held-out accuracy, the package size and the build time. Used to choose the committed
 * demo's rank and to show routing from an earlier tensor and the prototype router.
 *
 *   npm run bench:twin-build [-- --configs r8,r12,e0.5,r12:feature=pixels,r12:kind=prototype]
 * A config is `r<rank>` or `e<energy>`, then `:key=value` router overrides.
 * @module
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { type Recipe, SHARED_VARIANT, TWIN_INPUTS } from '@twinserve/shared'
import YAML from 'yaml'
import { buildPackage } from '../gpu-runner/src/build/build-package.ts'
import { createReporter, markdownTable } from '../gpu-runner/src/build/progress.ts'
import { loadPackage } from '../gpu-runner/src/package/load-package.ts'
import { openSession, ort } from '../gpu-runner/src/runtime/ort-session.ts'
import { argmaxRows } from '../gpu-runner/src/train/index.ts'
import { loadTaskSplit } from '../gpu-runner/src/zoo/index.ts'

const { values } = parseArgs({
  options: {
    configs: {
      type: 'string',
      default: 'r8,r12,r16,r32,r64,r12:feature=hidden2,r12:feature=pixels,r12:kind=prototype',
    },
    recipe: { type: 'string', default: 'gpu-runner/demo/recipe.yaml' },
  },
})
const recipePath = resolve(values.recipe ?? '')
const recipeDir = dirname(recipePath)
const recipe = YAML.parse(await readFile(recipePath, 'utf8')) as Recipe
const experts = recipe.experts.map((e) => ({ name: e.name, model: resolve(recipeDir, e.model) }))
const T = experts.length

function configRecipe(config: string): Recipe {
  const [size, ...overrides] = config.split(':')
  const router: Record<string, unknown> = {
    ...recipe.router,
    data: resolve(recipeDir, recipe.router.data),
  }
  for (const o of overrides) {
    const [k, v] = o.split('=') as [string, string]
    router[k] = Number.isNaN(Number(v)) ? v : Number(v)
  }
  return {
    ...recipe,
    base: resolve(recipeDir, recipe.base),
    experts: experts.map((e) => ({ name: e.name, model: e.model })),
    exclusive: size?.startsWith('e')
      ? { energy: Number(size.slice(1)), dtype: 'float32' }
      : { rank: Number(size?.slice(1)), dtype: 'float32' },
    router: router as Recipe['router'],
  }
}

type Session = ort.InferenceSession
async function open(model: Uint8Array | string): Promise<Session> {
  return (await openSession(model, { provider: 'cpu' })).session
}

const tests = experts.map((e) => loadTaskSplit(e.name, 'test'))

/** Accuracy of a session on every task's test split; `extra(n, task)` adds feeds (twin controls). */
async function accuracy(
  s: Session,
  extra?: (n: number, task: number) => Record<string, ort.Tensor>,
): Promise<number[]> {
  const out: number[] = []
  for (const [t, split] of tests.entries()) {
    const n = split.y.length
    let correct = 0
    for (let start = 0; start < n; start += 1000) {
      const rows = Math.min(1000, n - start)
      const feeds = {
        pixels: new ort.Tensor('float32', split.x.subarray(start * 784, (start + rows) * 784), [
          rows,
          784,
        ]),
        ...(extra ? extra(rows, t) : {}),
      }
      const res = await s.run(feeds, ['logits'])
      const pred = argmaxRows(res.logits?.data as Float32Array, 10)
      for (let i = 0; i < rows; i++) if (pred[i] === split.y[start + i]) correct++
    }
    out.push(correct / n)
  }
  return out
}

/** Twin controls: a one-hot row for `oneHot`, or the embedded router (dense) when undefined. */
function controls(rows: number, oneHot: number | undefined): Record<string, ort.Tensor> {
  const mix = new Float32Array(rows * T)
  if (oneHot !== undefined) for (let r = 0; r < rows; r++) mix[r * T + oneHot] = 1
  return {
    [TWIN_INPUTS.mixWeights]: new ort.Tensor('float32', mix, [rows, T]),
    [TWIN_INPUTS.useRouter]: new ort.Tensor(
      'float32',
      new Float32Array(rows).fill(oneHot === undefined ? 1 : 0),
      [rows, 1],
    ),
    [TWIN_INPUTS.expertMask]: new ort.Tensor('float32', new Float32Array(rows * T).fill(1), [
      rows,
      T,
    ]),
    [TWIN_INPUTS.topK]: new ort.Tensor('int64', new BigInt64Array(rows).fill(BigInt(T)), [rows, 1]),
  }
}

const pct = (x: number) => (x * 100).toFixed(1)
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
const rows: string[][] = []
const row = (label: string, accs: number[], extra = '') =>
  rows.push([label, ...accs.map(pct), pct(mean(accs)), extra])

const expertAcc: number[] = []
for (const [t, e] of experts.entries())
  expertAcc.push((await accuracy(await open(e.model)))[t] as number)
row('experts (each on its own task)', expertAcc)
row('base', await accuracy(await open(resolve(recipeDir, recipe.base))))

const dir = await mkdtemp(join(tmpdir(), 'twin-build-bench-'))
const sizes: string[][] = []
let staticDone = false
try {
  for (const config of (values.configs ?? '').split(',')) {
    const path = join(dir, `${config.replace(/\W/g, '_')}.yaml`)
    await writeFile(path, YAML.stringify(configRecipe(config)))
    const t0 = performance.now()
    const report = await buildPackage(path, {
      out: join(dir, `pkg-${config.replace(/\W/g, '_')}`),
      reporter: createReporter({ quiet: true }),
    })
    const seconds = (performance.now() - t0) / 1000
    const pkg = await loadPackage(report.dir)
    if (!staticDone) {
      row(
        `static: ${SHARED_VARIANT} (task arithmetic λ=0.3)`,
        await accuracy(await open(pkg.variants.get(SHARED_VARIANT) as Uint8Array)),
      )
      row(
        'static: ties (density 0.2)',
        await accuracy(await open(pkg.variants.get('ties') as Uint8Array)),
      )
      staticDone = true
    }
    const twin = await open(pkg.model)
    const routerNote = `router: ${report.manifest.router.kind} on '${report.router.feature}', held-out ${pct(report.router.heldoutAccuracy)}%`
    row(`twin ${config}, oracle one-hot`, await accuracy(twin, (n, t) => controls(n, t)))
    row(
      `twin ${config}, own router`,
      await accuracy(twin, (n) => controls(n, undefined)),
      routerNote,
    )
    sizes.push([
      config,
      ((report.sizes.files['model.onnx'] ?? 0) / 1e6).toFixed(2),
      (report.sizes.packageBytes / 1e6).toFixed(2),
      (report.sizes.expertsBytes / 1e6).toFixed(2),
      seconds.toFixed(1),
    ])
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}

const cpu =
  readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? cpus()[0]?.model
process.stdout.write(
  `Machine: nproc ${cpus().length}, ${cpu}, Node ${process.version}, onnxruntime-node CPU. ${new Date().toISOString().slice(0, 10)}\n\n`,
)
process.stdout.write(
  `Test accuracy, % (rows: model; columns: task)\n\n${markdownTable(['model', ...experts.map((e) => e.name), 'mean', 'note'], rows)}\n\n`,
)
process.stdout.write(
  `${markdownTable(['config', 'model.onnx MB', 'package MB', 'experts MB', 'build s'], sizes)}\n`,
)
