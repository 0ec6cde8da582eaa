/**
 * Train / validation / test data of every zoo task, materialised on demand:
 * - Fashion-MNIST tasks: `test` is the official 10,000-image test file (used for evaluation only); `val` is a
 *   seeded 5,000-image carve-out of the official training file; `train` is the other 55,000.
 * - digits: a seeded, per-class (stratified) split of the 1,797 images: 20% test, 10% val, the rest train.
 * Every Fashion task sees the same source images in each split, each through its own transform.
 * @module
 */

import { createRng, mixSeed, permutation, shuffleInPlace } from '@twinserve/gpu-runner/train'
import { AppError } from '@twinserve/shared'
import { DIGITS_MAX, DIGITS_SIDE, loadDigits, type RawDigits } from './digits.ts'
import { IMAGE_PIXELS, loadFashionMnist, type RawImages } from './fashion-mnist.ts'
import { getZooTask, type ZooTask } from './tasks.ts'

export type ZooSplit = 'train' | 'val' | 'test'
export const ZOO_SPLITS: readonly ZooSplit[] = ['train', 'val', 'test']

/** Seed of the split carving; part of the zoo's definition. */
export const SPLIT_SEED = 6
export const FASHION_VAL_SIZE = 5000
export const DIGITS_TEST_FRACTION = 0.2
export const DIGITS_VAL_FRACTION = 0.1

export interface TaskSplit {
  /** [n, 784] in [0, 1] */
  x: Float32Array
  /** [n] class ids 0..9 */
  y: Int32Array
  n: number
  /** Index of each example in its source file (Fashion train/t10k file, or the digits CSV row). */
  sourceIndex: Int32Array
}

export interface LoadTaskSplitOptions {
  /** Only the first `limit` examples of the split (tests, routing data). */
  limit?: number
}

const cache = new Map<string, RawImages | RawDigits>()
function fashion(file: 'train' | 'test'): RawImages {
  const key = `fashion-${file}`
  const hit = cache.get(key)
  if (hit) return hit
  const raw = loadFashionMnist(file)
  cache.set(key, raw)
  return raw
}
function digits(): RawDigits {
  const hit = cache.get('digits')
  if (hit) return hit
  const raw = loadDigits()
  cache.set('digits', raw)
  return raw
}

const sortAsc = (a: Int32Array) => a.sort()

/** Source indices of a split, in increasing order. */
export function splitIndices(source: ZooTask['source'], split: ZooSplit): Int32Array {
  if (source === 'fashion-mnist') {
    if (split === 'test') return Int32Array.from({ length: fashion('test').n }, (_, i) => i)
    const n = fashion('train').n
    const perm = permutation(n, createRng(mixSeed(SPLIT_SEED, 1)))
    return sortAsc(split === 'val' ? perm.slice(0, FASHION_VAL_SIZE) : perm.slice(FASHION_VAL_SIZE))
  }
  const { labels, n } = digits()
  const rng = createRng(mixSeed(SPLIT_SEED, 2))
  const picked: number[] = []
  for (let c = 0; c <= 9; c++) {
    const members = shuffleInPlace(
      Array.from({ length: n }, (_, i) => i).filter((i) => labels[i] === c),
      rng,
    )
    const nTest = Math.round(members.length * DIGITS_TEST_FRACTION)
    const nVal = Math.round(members.length * DIGITS_VAL_FRACTION)
    const range =
      split === 'test'
        ? [0, nTest]
        : split === 'val'
          ? [nTest, nTest + nVal]
          : [nTest + nVal, members.length]
    picked.push(...members.slice(range[0], range[1]))
  }
  return sortAsc(Int32Array.from(picked))
}

/**
 * One split of one task.
 * @example
 * const { x, y, n } = loadTaskSplit('rotated', 'test') // x: [10000, 784], y: [10000]
 */
export function loadTaskSplit(
  taskName: string,
  split: ZooSplit,
  opts: LoadTaskSplitOptions = {},
): TaskSplit {
  const task = getZooTask(taskName)
  if (!ZOO_SPLITS.includes(split))
    throw new AppError(
      'INVALID_REQUEST',
      `unknown split '${split}'; splits: ${ZOO_SPLITS.join(', ')}`,
    )
  let indices = splitIndices(task.source, split)
  if (opts.limit !== undefined) {
    if (!Number.isInteger(opts.limit) || opts.limit < 0)
      throw new AppError(
        'INVALID_REQUEST',
        `limit must be a non-negative integer, got ${opts.limit}`,
      )
    indices = indices.subarray(0, opts.limit)
  }
  const n = indices.length
  const x = new Float32Array(n * IMAGE_PIXELS) // [n, 784]
  const y = new Int32Array(n)
  if (task.source === 'fashion-mnist') {
    const file = split === 'test' ? 'test' : 'train'
    const raw = fashion(file)
    const src = new Float32Array(IMAGE_PIXELS)
    indices.forEach((si, r) => {
      for (let p = 0; p < IMAGE_PIXELS; p++)
        src[p] = (raw.images[si * IMAGE_PIXELS + p] as number) / 255
      // The example seed names the file and the index, so an image gets the same noise in every run.
      task.apply(
        src,
        x.subarray(r * IMAGE_PIXELS, (r + 1) * IMAGE_PIXELS),
        mixSeed(file === 'test' ? 1 : 0, si),
      )
      y[r] = raw.labels[si] as number
    })
  } else {
    const raw = digits()
    const px = DIGITS_SIDE * DIGITS_SIDE
    const src = new Float32Array(px)
    indices.forEach((si, r) => {
      for (let p = 0; p < px; p++) src[p] = (raw.images[si * px + p] as number) / DIGITS_MAX
      task.apply(src, x.subarray(r * IMAGE_PIXELS, (r + 1) * IMAGE_PIXELS), mixSeed(2, si))
      y[r] = raw.labels[si] as number
    })
  }
  return { x, y, n, sourceIndex: indices.slice() }
}
