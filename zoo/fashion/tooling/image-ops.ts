/**
 * Pure pixel operations on square greyscale images stored row-major in Float32Arrays with values in [0, 1].
 * Each writes into `out` (same length as the result) so callers can reuse buffers across 60k images.
 * @module
 */
import type { Rng } from '@twinserve/gpu-runner/train'

/** 1 − x: dark background becomes white. */
export function invert(src: Float32Array, out: Float32Array): Float32Array {
  for (let i = 0; i < src.length; i++) out[i] = 1 - (src[i] as number)
  return out
}

/** Rotates 90° clockwise: the top row becomes the right column, out[r][c] = src[side-1-c][r]. */
export function rotate90(src: Float32Array, side: number, out: Float32Array): Float32Array {
  for (let r = 0; r < side; r++)
    for (let c = 0; c < side; c++) out[r * side + c] = src[(side - 1 - c) * side + r] as number
  return out
}

/** out[i] = src[perm[i]]: moves pixels to fixed new positions. */
export function permutePixels(
  src: Float32Array,
  perm: Int32Array,
  out: Float32Array,
): Float32Array {
  for (let i = 0; i < perm.length; i++) out[i] = src[perm[i] as number] as number
  return out
}

/** 3×3 binomial blur, kernel [1 2 1]ᵀ[1 2 1] / 16, zero outside the image (backgrounds are 0 there anyway). */
export function blur3x3(src: Float32Array, side: number, out: Float32Array): Float32Array {
  const k = [1, 2, 1]
  for (let r = 0; r < side; r++)
    for (let c = 0; c < side; c++) {
      let s = 0
      for (let dr = -1; dr <= 1; dr++) {
        const rr = r + dr
        if (rr < 0 || rr >= side) continue
        for (let dc = -1; dc <= 1; dc++) {
          const cc = c + dc
          if (cc < 0 || cc >= side) continue
          s += (k[dr + 1] as number) * (k[dc + 1] as number) * (src[rr * side + cc] as number)
        }
      }
      out[r * side + c] = s / 16
    }
  return out
}

/** Adds N(0, sigma²) per pixel from `rng` and clips to [0, 1]. In place. */
export function addGaussianNoise(img: Float32Array, sigma: number, rng: Rng): Float32Array {
  for (let i = 0; i < img.length; i++) {
    const v = (img[i] as number) + sigma * rng.normal()
    img[i] = Math.min(Math.max(v, 0), 1)
  }
  return img
}

/**
 * Bilinear resize of a square image, pixel centres aligned (as image libraries do): destination pixel d samples
 * the source at (d + 0.5)·src/dst − 0.5, clamped to the edge pixels.
 */
export function resizeBilinear(
  src: Float32Array,
  srcSide: number,
  dstSide: number,
  out: Float32Array,
): Float32Array {
  const scale = srcSide / dstSide
  const coord = (d: number) => {
    const s = Math.min(Math.max((d + 0.5) * scale - 0.5, 0), srcSide - 1)
    const i0 = Math.floor(s)
    const i1 = Math.min(i0 + 1, srcSide - 1)
    return { i0, i1, f: s - i0 }
  }
  for (let r = 0; r < dstSide; r++) {
    const y = coord(r)
    for (let c = 0; c < dstSide; c++) {
      const x = coord(c)
      const top =
        (src[y.i0 * srcSide + x.i0] as number) * (1 - x.f) +
        (src[y.i0 * srcSide + x.i1] as number) * x.f
      const bottom =
        (src[y.i1 * srcSide + x.i0] as number) * (1 - x.f) +
        (src[y.i1 * srcSide + x.i1] as number) * x.f
      out[r * dstSide + c] = top * (1 - y.f) + bottom * y.f
    }
  }
  return out
}
