/**
 * The zoo's tasks: six domains that share one input (a 28×28 greyscale image, 784 floats in [0, 1]) and one
 * 10-way output, so that one base model and its experts have the same shapes and weight-space merging applies.
 * Most are Fashion-MNIST seen through a fixed transform; `digits` is a genuinely different data set. `permuted`
 * (no spatial structure left) and `digits` (different classes) conflict strongly with the rest, which is what
 * makes a static merge visibly lose accuracy while per-input routing does not.
 * @module
 */

import { createRng, mixSeed, permutation } from '@twinserve/gpu-runner/train'
import { AppError } from '@twinserve/shared'
import { DIGIT_CLASSES, DIGITS_SIDE } from './digits.ts'
import { FASHION_CLASSES, IMAGE_PIXELS, IMAGE_SIDE } from './fashion-mnist.ts'
import * as image from './image-ops.ts'

/** Fixed seeds of the task definitions: changing one changes a task (and invalidates the zoo). */
export const TASK_SEEDS = { permutation: 4, noise: 5 } as const
/** Standard deviation of the pixel noise in `blur-noise`. */
export const BLUR_NOISE_SIGMA = 0.3

export const ZOO_TASK_NAMES = [
  'original',
  'inverted',
  'rotated',
  'permuted',
  'blur-noise',
  'digits',
] as const
export type ZooTaskName = (typeof ZOO_TASK_NAMES)[number]

export interface ZooTask {
  name: ZooTaskName
  description: string
  /** Where the images come from; `source` images are scaled to [0, 1] before `apply`. */
  source: 'fashion-mnist' | 'digits'
  /** What each of the 10 outputs means. */
  classes: readonly string[]
  /**
   * Writes the task's [784] input for one source image (Fashion: [784], digits: [64], both in [0, 1]).
   * `exampleSeed` identifies the source image (file and index), so random transforms are reproducible.
   */
  apply(src: Float32Array, out: Float32Array, exampleSeed: number): void
}

const PIXEL_PERMUTATION = permutation(IMAGE_PIXELS, createRng(TASK_SEEDS.permutation))

/** The fixed pixel permutation of `permuted`: out[i] = src[perm[i]]. */
export function pixelPermutation(): Int32Array {
  return PIXEL_PERMUTATION.slice()
}

const copy = (src: Float32Array, out: Float32Array) => {
  out.set(src)
}

export const ZOO_TASKS: readonly ZooTask[] = [
  {
    name: 'original',
    description:
      'Fashion-MNIST as is: product photos of clothing, light garment on a black background',
    source: 'fashion-mnist',
    classes: FASHION_CLASSES,
    apply: copy,
  },
  {
    name: 'inverted',
    description:
      'Fashion-MNIST with grey levels inverted (1 - x): dark garment on a white background',
    source: 'fashion-mnist',
    classes: FASHION_CLASSES,
    apply: (src, out) => image.invert(src, out),
  },
  {
    name: 'rotated',
    description: 'Fashion-MNIST rotated 90 degrees clockwise',
    source: 'fashion-mnist',
    classes: FASHION_CLASSES,
    apply: (src, out) => image.rotate90(src, IMAGE_SIDE, out),
  },
  {
    name: 'permuted',
    description: `Fashion-MNIST with the 784 pixel positions shuffled by one fixed permutation (seed ${TASK_SEEDS.permutation}): no spatial structure left`,
    source: 'fashion-mnist',
    classes: FASHION_CLASSES,
    apply: (src, out) => image.permutePixels(src, PIXEL_PERMUTATION, out),
  },
  {
    name: 'blur-noise',
    description: `Fashion-MNIST blurred with a 3x3 binomial kernel, then Gaussian noise (sigma ${BLUR_NOISE_SIGMA}) per pixel, clipped to [0, 1]; the noise is fixed per image`,
    source: 'fashion-mnist',
    classes: FASHION_CLASSES,
    apply: (src, out, exampleSeed) => {
      image.blur3x3(src, IMAGE_SIDE, out)
      image.addGaussianNoise(
        out,
        BLUR_NOISE_SIGMA,
        createRng(mixSeed(TASK_SEEDS.noise, exampleSeed)),
      )
    },
  },
  {
    name: 'digits',
    description:
      'Handwritten digits 0-9 (UCI/sklearn 8x8, counts 0..16 scaled to [0, 1]) upsampled bilinearly to 28x28; output i means digit i',
    source: 'digits',
    classes: DIGIT_CLASSES,
    apply: (src, out) => image.resizeBilinear(src, DIGITS_SIDE, IMAGE_SIDE, out),
  },
]

export function isZooTaskName(name: string): name is ZooTaskName {
  return (ZOO_TASK_NAMES as readonly string[]).includes(name)
}

/** The task called `name`; NOT_FOUND listing the tasks otherwise. */
export function getZooTask(name: string): ZooTask {
  const task = ZOO_TASKS.find((t) => t.name === name)
  if (!task)
    throw new AppError(
      'NOT_FOUND',
      `unknown zoo task '${name}'; tasks: ${ZOO_TASK_NAMES.join(', ')}`,
    )
  return task
}
