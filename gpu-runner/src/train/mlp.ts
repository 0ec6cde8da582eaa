/**
 * The weights of a fully connected ReLU network (multi-layer perceptron) as plain Float32Arrays, with the
 * parameter names every graph this module builds uses (`fc1.weight`, `fc1.bias`, ...), so that the training
 * graph, the evaluation graph and the exported model agree by construction.
 * @module
 */
import { AppError } from '@twinserve/shared'
import { createRng } from './rng.ts'

export interface MlpLayer {
  /** [in, out], row-major: y = x·W + b. */
  weight: Float32Array
  /** [out] */
  bias: Float32Array
}

export interface MlpWeights {
  /** Layer widths from input to output, e.g. [784, 256, 128, 10]. */
  sizes: readonly number[]
  /** sizes.length - 1 layers; ReLU after every layer but the last. */
  layers: MlpLayer[]
}

/** Parameter (graph tensor) names of layer `i` (0-based). */
export function layerParamNames(i: number): { weight: string; bias: string } {
  return { weight: `fc${i + 1}.weight`, bias: `fc${i + 1}.bias` }
}

export function checkSizes(sizes: readonly number[]): void {
  if (sizes.length < 2)
    throw new AppError('INVALID_REQUEST', `MLP needs at least 2 layer sizes, got [${sizes}]`)
  for (const s of sizes)
    if (!Number.isInteger(s) || s < 1)
      throw new AppError(
        'INVALID_REQUEST',
        `MLP layer sizes must be positive integers, got [${sizes}]`,
      )
}

/**
 * He-normal initialised weights (std sqrt(2/in), suited to ReLU), zero biases; seeded.
 * @example const w = initMlp([784, 256, 128, 10], 1)
 */
export function initMlp(sizes: readonly number[], seed: number): MlpWeights {
  checkSizes(sizes)
  const rng = createRng(seed)
  const layers: MlpLayer[] = []
  for (let i = 0; i + 1 < sizes.length; i++) {
    const nIn = sizes[i] as number
    const nOut = sizes[i + 1] as number
    const std = Math.sqrt(2 / nIn)
    const weight = new Float32Array(nIn * nOut)
    for (let k = 0; k < weight.length; k++) weight[k] = rng.normal() * std
    layers.push({ weight, bias: new Float32Array(nOut) })
  }
  return { sizes: [...sizes], layers }
}

export function cloneMlp(w: MlpWeights): MlpWeights {
  return {
    sizes: [...w.sizes],
    layers: w.layers.map((l) => ({ weight: l.weight.slice(), bias: l.bias.slice() })),
  }
}

export function parameterCount(sizes: readonly number[]): number {
  let n = 0
  for (let i = 0; i + 1 < sizes.length; i++)
    n += (sizes[i] as number) * (sizes[i + 1] as number) + (sizes[i + 1] as number)
  return n
}

/**
 * Checks that `w` is a well-formed MLP of the given sizes (for init-from-base and export): layer count, tensor
 * lengths, finite values. Mismatched shapes are INCOMPATIBLE_EXPERTS (a base that does not fit), non-finite
 * values INVALID_MODEL.
 */
export function checkWeights(w: MlpWeights, sizes: readonly number[] = w.sizes): void {
  checkSizes(sizes)
  if (w.sizes.length !== sizes.length || w.sizes.some((s, i) => s !== sizes[i]))
    throw new AppError(
      'INCOMPATIBLE_EXPERTS',
      `weights have layer sizes [${w.sizes}], expected [${sizes}]`,
    )
  if (w.layers.length !== sizes.length - 1)
    throw new AppError(
      'INCOMPATIBLE_EXPERTS',
      `weights have ${w.layers.length} layers, expected ${sizes.length - 1}`,
    )
  w.layers.forEach((l, i) => {
    const nIn = sizes[i] as number
    const nOut = sizes[i + 1] as number
    const names = layerParamNames(i)
    if (l.weight.length !== nIn * nOut)
      throw new AppError(
        'INCOMPATIBLE_EXPERTS',
        `${names.weight} has ${l.weight.length} values, expected ${nIn}x${nOut}`,
      )
    if (l.bias.length !== nOut)
      throw new AppError(
        'INCOMPATIBLE_EXPERTS',
        `${names.bias} has ${l.bias.length} values, expected ${nOut}`,
      )
    for (const [name, t] of [
      [names.weight, l.weight],
      [names.bias, l.bias],
    ] as const)
      for (let k = 0; k < t.length; k++)
        if (!Number.isFinite(t[k]))
          throw new AppError('INVALID_MODEL', `${name}[${k}] is ${t[k]}, not a finite number`)
  })
}
