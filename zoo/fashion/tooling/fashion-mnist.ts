/**
 * Fashion-MNIST (Zalando, MIT) as installed by Debian's `dataset-fashion-mnist` package: 60,000 training and
 * 10,000 test images, 28×28 greyscale, 10 balanced classes.
 * @see https://github.com/zalandoresearch/fashion-mnist
 * @module
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { AppError } from '@twinserve/shared'
import { readIdx } from './idx.ts'

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
/** Overrides the data directory (e.g. a copy outside /usr/share). */
export const FASHION_MNIST_DIR_ENV = 'TWINSERVE_FASHION_MNIST_DIR'
export const FASHION_MNIST_DEBIAN_PACKAGE = 'dataset-fashion-mnist'

export const FASHION_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
] as const

export const IMAGE_SIDE = 28
export const IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE

export interface RawImages {
  /** [n, 28*28] grey levels 0..255, row-major, 0 = background. */
  images: Uint8Array
  /** [n] class ids 0..9 */
  labels: Uint8Array
  n: number
}

const FILES = {
  train: ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'],
  test: ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'],
} as const

export function fashionMnistDir(): string {
  return process.env[FASHION_MNIST_DIR_ENV] || FASHION_MNIST_DIR
}

/**
 * Loads one official split of Fashion-MNIST.
 * @example const { images, labels, n } = loadFashionMnist('train') // n = 60000
 */
export function loadFashionMnist(split: 'train' | 'test', dir = fashionMnistDir()): RawImages {
  const [imgFile, lblFile] = FILES[split]
  const imgPath = join(dir, imgFile)
  const lblPath = join(dir, lblFile)
  for (const p of [imgPath, lblPath])
    if (!existsSync(p))
      throw new AppError(
        'NOT_FOUND',
        `Fashion-MNIST file ${p} is missing: install the Debian package ${FASHION_MNIST_DEBIAN_PACKAGE} ` +
          `(sudo apt-get install ${FASHION_MNIST_DEBIAN_PACKAGE}), or point ${FASHION_MNIST_DIR_ENV} at a directory with ${imgFile} and ${lblFile}`,
      )
  const img = readIdx(imgPath, { rank: 3, dims: [undefined, IMAGE_SIDE, IMAGE_SIDE] })
  const lbl = readIdx(lblPath, { rank: 1 })
  const n = img.dims[0] as number
  if (lbl.dims[0] !== n)
    throw new AppError(
      'INVALID_MODEL',
      `Fashion-MNIST ${split}: ${n} images but ${lbl.dims[0]} labels (${imgPath}, ${lblPath})`,
    )
  const bad = lbl.data.findIndex((v) => v >= FASHION_CLASSES.length)
  if (bad >= 0)
    throw new AppError(
      'INVALID_MODEL',
      `Fashion-MNIST ${split}: label ${lbl.data[bad]} at index ${bad} is not a class id 0..9 (${lblPath})`,
    )
  return { images: img.data, labels: lbl.data, n }
}
