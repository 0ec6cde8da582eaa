/**
 * Builds the Fashion-MNIST expert zoo: a base MLP pretrained on the original domain, then one expert per task
 * fine-tuned from it with every weight trainable (Twin-Merging's fully fine-tuned experts), each evaluated on
 * every task's test split, exported as ONNX with identical graphs, described in `zoo.json`, plus the routing
 * examples the twin builder reads.
 *
 * The base is deliberately a short pretrain (one epoch): a generic starting point rather than a converged
 * original-domain classifier, so that the `original` expert, too, has something to add, as a task expert over a
 * pretrained model does.
 * @see https://arxiv.org/abs/2406.15479 (Twin-Merging)
 * @module
 */
import { createHash } from 'node:crypto'
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import {
  exportMlpOnnx,
  MlpSessions,
  type MlpWeights,
  mixSeed,
  parameterCount,
  type TrainMlpResult,
  trainMlp,
} from '@twinserve/gpu-runner/train'
import { FASHION_MNIST_DEBIAN_PACKAGE, IMAGE_PIXELS } from './fashion-mnist.ts'
import { writeRoutingJsonl } from './routing-data.ts'
import { loadTaskSplit, SPLIT_SEED, type TaskSplit } from './task-data.ts'
import { TASK_SEEDS, ZOO_TASKS, type ZooTask, type ZooTaskName } from './tasks.ts'
import {
  ZOO_FORMAT,
  ZOO_FORMAT_VERSION,
  type ZooManifest,
  ZooManifestSchema,
  type ZooTraining,
} from './zoo-manifest.ts'

export const ZOO_INPUT_NAME = 'pixels'
export const ZOO_OUTPUT_NAME = 'logits'
/** Graph name shared by the base and every expert (part of "identical graphs"). */
export const ZOO_GRAPH_NAME = 'twinserve_zoo_mlp'

interface StageRecipe {
  epochs: number
  lr: number
  batchSize: number
  lrSchedule: 'constant' | 'cosine'
  patience?: number
}

export interface ZooRecipe {
  layers: number[]
  /** onnxruntime intra-op threads for training; results are reproducible for a fixed count on one CPU type. */
  threads: number
  seed: number
  base: StageRecipe
  /** Per data source: digits has 1,259 training images (10 steps an epoch), Fashion 55,000. */
  expert: Record<ZooTask['source'], StageRecipe>
  routingPerTask: number
}

/**
 * 784→256→128→10: 235,146 parameters, 0.94 MB per fp32 model, 6.6 MB for base + 6 experts (the demo budget is
 * ~7 MB, leaving room in 10 MB for the twin package built from them).
 */
export const ZOO_RECIPE: ZooRecipe = {
  layers: [IMAGE_PIXELS, 256, 128, 10],
  threads: 2,
  seed: 2406,
  base: { epochs: 1, lr: 1e-3, batchSize: 128, lrSchedule: 'constant' },
  expert: {
    'fashion-mnist': { epochs: 20, lr: 5e-4, batchSize: 128, lrSchedule: 'cosine', patience: 4 },
    digits: { epochs: 150, lr: 5e-4, batchSize: 128, lrSchedule: 'cosine', patience: 15 },
  },
  // Routing examples per task (digits has only 1,259). The router's accuracy grows with them: 97.1% at 500 and
  // 98.3% at 2,000 on the zoo's validation split (`npm run bench:quality`, bench/RESULTS.md). Raising this only
  // appends examples: the first 500 per task stay the same lines, and the models do not change.
  routingPerTask: 2000,
}

export interface BuildZooOptions {
  outDir: string
  routingPath: string
  /** The routing path as recorded in zoo.json (repository-relative); defaults to routingPath. */
  routingLabel?: string
  recipe?: ZooRecipe
  /** Subsets for tests: only the first N examples of each split. */
  limits?: Partial<Record<'train' | 'val' | 'test', number>>
  tasks?: readonly ZooTaskName[]
  log?: (line: string) => void
}

export interface BuildZooResult {
  manifest: ZooManifest
  /** Wall times, not reproducible (hence not in zoo.json). */
  timings: { loadMs: number; baseMs: number; expertMs: Record<string, number>; totalMs: number }
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** Writes to a temporary file beside `path`, then renames: never a half-written file. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true })
  const tmp = `${path}.tmp-${process.pid}`
  try {
    writeFileSync(tmp, data)
    renameSync(tmp, path)
  } catch (err) {
    rmSync(tmp, { force: true })
    throw err
  }
}

interface TaskData {
  task: ZooTask
  train: TaskSplit
  val: TaskSplit
  test: TaskSplit
}

const round4 = (v: number) => Math.round(v * 1e4) / 1e4

function trainingRecord(
  taskName: string,
  data: TaskData,
  stage: StageRecipe,
  seed: number,
  r: TrainMlpResult,
  initFrom: string | null,
): ZooTraining {
  const best = r.history[r.bestEpoch - 1]
  return {
    task: taskName,
    trainExamples: data.train.n,
    valExamples: data.val.n,
    epochsPlanned: stage.epochs,
    epochsRun: r.history.length,
    bestEpoch: r.bestEpoch,
    ...(best?.valAccuracy === undefined ? {} : { valAccuracy: round4(best.valAccuracy) }),
    optimizer: 'adam',
    lr: stage.lr,
    lrSchedule: stage.lrSchedule,
    batchSize: stage.batchSize,
    ...(stage.patience === undefined ? {} : { patience: stage.patience }),
    seed,
    initFrom,
  }
}

/** What every step of one zoo build shares. */
interface ZooRun {
  recipe: ZooRecipe
  outDir: string
  data: Map<ZooTaskName, TaskData>
  sessions: MlpSessions
  log: (line: string) => void
}

/** A trained model as written: its weights, file bytes and training record. */
interface TrainedModel {
  weights: MlpWeights
  bytes: Uint8Array
  sha256: string
  training: ZooTraining
  /** Test accuracy on every task. */
  testAccuracy: Record<string, number>
  ms: number
}

type SplitLimit = (split: 'train' | 'val' | 'test') => { limit?: number }

function loadTaskData(task: ZooTask, lim: SplitLimit): TaskData {
  return {
    task,
    train: loadTaskSplit(task.name, 'train', lim('train')),
    val: loadTaskSplit(task.name, 'val', lim('val')),
    test: loadTaskSplit(task.name, 'test', lim('test')),
  }
}

async function testAccuracy(run: ZooRun, w: MlpWeights): Promise<Record<string, number>> {
  const acc: Record<string, number> = {}
  for (const [name, d] of run.data)
    acc[name] = round4((await run.sessions.evaluate(w, d.test.x, d.test.y)).accuracy)
  return acc
}

function epochLog(run: ZooRun, label: string) {
  return (e: { epoch: number; trainLoss: number; valAccuracy?: number }) =>
    run.log(
      `  ${label} epoch ${e.epoch}: train loss ${e.trainLoss.toFixed(4)}, val acc ${e.valAccuracy?.toFixed(4) ?? '-'}`,
    )
}

/** One model as ONNX: the zoo's shared graph, input/output names and metadata, plus `extra` metadata. */
function exportZooModel(
  run: ZooRun,
  weights: MlpWeights,
  role: 'base' | 'expert',
  task: string,
  extra: Record<string, string>,
): Uint8Array {
  return exportMlpOnnx(weights, {
    inputName: ZOO_INPUT_NAME,
    outputName: ZOO_OUTPUT_NAME,
    graphName: ZOO_GRAPH_NAME,
    metadata: {
      'twinserve.role': role,
      task,
      input: `${ZOO_INPUT_NAME}: float32 [batch, 784], a 28x28 greyscale image, row-major, values in [0, 1]`,
      output: `${ZOO_OUTPUT_NAME}: float32 [batch, 10], unnormalised class scores (softmax gives probabilities)`,
      layers: run.recipe.layers.join('-'),
      data: 'Fashion-MNIST (Zalando SE, MIT) via Debian dataset-fashion-mnist; UCI handwritten digits (Alpaydin & Kaynak, CC BY 4.0) via scikit-learn',
      ...extra,
    },
  })
}

/** The base: pretrained on the original domain, written to `base.onnx`. */
async function trainBase(run: ZooRun, original: TaskData): Promise<TrainedModel> {
  const { recipe } = run
  const seed = mixSeed(recipe.seed, 0)
  const t0 = performance.now()
  const r = await trainMlp({
    layers: recipe.layers,
    x: original.train.x,
    y: original.train.y,
    valX: original.val.x,
    valY: original.val.y,
    ...recipe.base,
    seed,
    sessions: run.sessions,
    onEpoch: epochLog(run, 'base'),
  })
  const ms = performance.now() - t0
  const acc = await testAccuracy(run, r.weights)
  run.log(`base trained in ${(ms / 1000).toFixed(1)} s; test accuracy ${JSON.stringify(acc)}`)
  const training = trainingRecord('original', original, recipe.base, seed, r, null)
  const bytes = exportZooModel(run, r.weights, 'base', 'original', {
    description:
      'Base model: an MLP pretrained for one epoch on Fashion-MNIST (the original domain)',
    classes: JSON.stringify((run.data.get('original')?.task ?? ZOO_TASKS[0])?.classes ?? []),
    training: JSON.stringify(training),
    test_accuracy: JSON.stringify(acc),
  })
  writeFileAtomic(join(run.outDir, 'base.onnx'), bytes)
  return { weights: r.weights, bytes, sha256: sha256Hex(bytes), training, testAccuracy: acc, ms }
}

/** One task's expert: the base fine-tuned on the task, every weight trainable, written to `experts/<task>.onnx`. */
async function trainExpert(
  run: ZooRun,
  d: TaskData,
  base: TrainedModel,
): Promise<TrainedModel & { file: string }> {
  const { recipe } = run
  const name = d.task.name
  const stage = recipe.expert[d.task.source]
  const seed = mixSeed(recipe.seed, 1 + ZOO_TASKS.findIndex((t) => t.name === name))
  const t0 = performance.now()
  const r = await trainMlp({
    layers: recipe.layers,
    init: base.weights,
    x: d.train.x,
    y: d.train.y,
    valX: d.val.x,
    valY: d.val.y,
    ...stage,
    seed,
    sessions: run.sessions,
    onEpoch: epochLog(run, name),
  })
  const ms = performance.now() - t0
  const acc = await testAccuracy(run, r.weights)
  run.log(
    `expert ${name}: ${(ms / 1000).toFixed(1)} s, best epoch ${r.bestEpoch}/${r.history.length}, test ${acc[name]} (base ${base.testAccuracy[name]})`,
  )
  const training = trainingRecord(name, d, stage, seed, r, 'base')
  const file = `experts/${name}.onnx`
  const bytes = exportZooModel(run, r.weights, 'expert', name, {
    description: `Expert for '${name}': ${d.task.description}. Fine-tuned from base.onnx with all weights trainable`,
    classes: JSON.stringify(d.task.classes),
    fine_tuned_from: `base.onnx sha256:${base.sha256}`,
    training: JSON.stringify(training),
    test_accuracy: JSON.stringify(acc),
  })
  writeFileAtomic(join(run.outDir, file), bytes)
  return {
    weights: r.weights,
    bytes,
    sha256: sha256Hex(bytes),
    training,
    testAccuracy: acc,
    ms,
    file,
  }
}

/** `zoo.json`: everything reproducible about the build (no timings). */
function zooManifest(
  run: ZooRun,
  base: TrainedModel,
  experts: ZooManifest['experts'],
  routingFile: string,
): ZooManifest {
  const { recipe } = run
  return ZooManifestSchema.parse({
    format: ZOO_FORMAT,
    formatVersion: ZOO_FORMAT_VERSION,
    description:
      'Fashion-MNIST multi-domain expert zoo: one base MLP pretrained on the original domain and one fully fine-tuned expert per task; all graphs identical up to weights. Regenerate with `npm run zoo`.',
    input: { name: ZOO_INPUT_NAME, shape: ['batch', IMAGE_PIXELS], range: [0, 1] },
    output: { name: ZOO_OUTPUT_NAME, shape: ['batch', recipe.layers[recipe.layers.length - 1]] },
    layers: recipe.layers,
    parameters: parameterCount(recipe.layers),
    seeds: {
      zoo: recipe.seed,
      split: SPLIT_SEED,
      permutation: TASK_SEEDS.permutation,
      noise: TASK_SEEDS.noise,
    },
    threads: recipe.threads,
    tasks: [...run.data.values()].map((d) => ({
      name: d.task.name,
      description: d.task.description,
      source: d.task.source,
      classes: [...d.task.classes],
      split: { train: d.train.n, val: d.val.n, test: d.test.n },
    })),
    base: {
      file: 'base.onnx',
      sha256: base.sha256,
      bytes: base.bytes.length,
      training: base.training,
      testAccuracy: base.testAccuracy,
    },
    experts,
    routing: { file: routingFile, perTask: recipe.routingPerTask, split: 'train' },
    totalBytes: base.bytes.length + experts.reduce((a, e) => a + e.bytes, 0),
    data: [
      `Fashion-MNIST: Debian package ${FASHION_MNIST_DEBIAN_PACKAGE} (/usr/share/datasets/fashion-mnist), MIT, (c) 2017 Zalando SE`,
      'digits: zoo/fashion/data/digits.csv.gz, UCI Optical Recognition of Handwritten Digits (Alpaydin & Kaynak 1998), CC BY 4.0, via scikit-learn',
    ],
  })
}

/**
 * Trains and writes the zoo. Files: `<outDir>/base.onnx`, `<outDir>/experts/<task>.onnx`, `<outDir>/zoo.json`
 * (written last, so it only ever lists complete files), and the routing JSONL at `routingPath`.
 * @example await buildZoo({ outDir: 'zoo/fashion/models', routingPath: 'bench/.cache/zoo/routing.jsonl' })
 */
export async function buildZoo(opts: BuildZooOptions): Promise<BuildZooResult> {
  const recipe = opts.recipe ?? ZOO_RECIPE
  const log = opts.log ?? (() => {})
  const t0 = performance.now()
  const lim: SplitLimit = (split) =>
    opts.limits?.[split] === undefined ? {} : { limit: opts.limits[split] }
  const data = new Map<ZooTaskName, TaskData>()
  for (const task of ZOO_TASKS.filter((t) => !opts.tasks || opts.tasks.includes(t.name)))
    data.set(task.name, loadTaskData(task, lim))
  const loadMs = performance.now() - t0
  log(`loaded ${data.size} tasks in ${(loadMs / 1000).toFixed(1)} s`)

  const sessions = await MlpSessions.open(recipe.layers, {
    provider: 'cpu',
    threads: recipe.threads,
  })
  try {
    const run: ZooRun = { recipe, outDir: opts.outDir, data, sessions, log }
    // The base always trains on `original`, even when a test builds a zoo of other tasks only.
    const base = await trainBase(
      run,
      data.get('original') ?? loadTaskData(ZOO_TASKS[0] as ZooTask, lim),
    )
    const experts: ZooManifest['experts'] = []
    const expertMs: Record<string, number> = {}
    for (const d of data.values()) {
      const e = await trainExpert(run, d, base)
      expertMs[d.task.name] = e.ms
      experts.push({
        name: d.task.name,
        file: e.file,
        sha256: e.sha256,
        bytes: e.bytes.length,
        training: e.training,
        testAccuracy: e.testAccuracy,
      })
    }

    const routingCounts = writeRoutingJsonl(
      opts.routingPath,
      [...data.values()].map((d) => ({ expert: d.task.name, x: d.train.x, n: d.train.n })),
      recipe.routingPerTask,
      mixSeed(recipe.seed, 100),
    )
    log(`routing data: ${JSON.stringify(routingCounts)} -> ${opts.routingPath}`)

    const manifest = zooManifest(run, base, experts, opts.routingLabel ?? opts.routingPath)
    writeFileAtomic(join(opts.outDir, 'zoo.json'), `${JSON.stringify(manifest, null, 2)}\n`)
    const timings = { loadMs, baseMs: base.ms, expertMs, totalMs: performance.now() - t0 }
    return { manifest, timings }
  } finally {
    await sessions.release()
  }
}
