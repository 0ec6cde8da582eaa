/**
 * sklearn's 8×8 handwritten digits (UCI Optical Recognition of Handwritten Digits, CC BY 4.0), bundled in
 * ../data with its attribution. 1,797 rows of 64 pixel counts (0..16) and a label.
 * @module
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'
import { AppError } from '@twinserve/shared'

export const DIGITS_PATH = fileURLToPath(new URL('../data/digits.csv.gz', import.meta.url))
export const DIGITS_SIDE = 8
export const DIGITS_MAX = 16
export const DIGIT_CLASSES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] as const

export interface RawDigits {
  /** [n, 64] pixel counts 0..16, row-major */
  images: Uint8Array
  /** [n] digits 0..9 */
  labels: Uint8Array
  n: number
}

/** Parses the CSV text (one row per line: 64 pixel counts, then the label). */
export function parseDigitsCsv(text: string, source: string): RawDigits {
  const lines = text.split('\n').filter((l) => l.trim() !== '')
  const n = lines.length
  const px = DIGITS_SIDE * DIGITS_SIDE
  const images = new Uint8Array(n * px)
  const labels = new Uint8Array(n)
  lines.forEach((line, r) => {
    const cells = line.split(',')
    if (cells.length !== px + 1)
      throw new AppError(
        'INVALID_MODEL',
        `digits ${source}: line ${r + 1} has ${cells.length} values, expected ${px + 1}`,
      )
    cells.forEach((cell, j) => {
      const v = Number(cell)
      const max = j < px ? DIGITS_MAX : 9
      if (!Number.isInteger(v) || v < 0 || v > max)
        throw new AppError(
          'INVALID_MODEL',
          `digits ${source}: line ${r + 1}, column ${j + 1} is '${cell}', expected an integer 0..${max}`,
        )
      if (j < px) images[r * px + j] = v
      else labels[r] = v
    })
  })
  return { images, labels, n }
}

export function loadDigits(path = DIGITS_PATH): RawDigits {
  let text: string
  try {
    text = gunzipSync(readFileSync(path)).toString('utf8')
  } catch (err) {
    throw new AppError(
      'INVALID_MODEL',
      `digits ${path}: cannot read the gzipped CSV (${(err as Error).message})`,
      { cause: err },
    )
  }
  return parseDigitsCsv(text, path)
}
