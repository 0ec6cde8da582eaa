import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { AppError } from '@twinserve/shared'
import { afterAll, describe, expect, it } from 'vitest'
import { FASHION_MNIST_DIR, loadFashionMnist } from './fashion-mnist.ts'
import { parseIdx, readIdx } from './idx.ts'

/** An IDX file: magic (0, 0, type, rank), big-endian dims, payload. */
function idx(dims: number[], payload: number[], type = 0x08): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length)
  head.writeUInt8(type, 2)
  head.writeUInt8(dims.length, 3)
  dims.forEach((d, i) => {
    head.writeUInt32BE(d, 4 + 4 * i)
  })
  return Buffer.concat([head, Buffer.from(payload)])
}

const dir = mkdtempSync(join(tmpdir(), 'twinserve-idx-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const file = (name: string, bytes: Uint8Array) => {
  const p = join(dir, name)
  writeFileSync(p, bytes)
  return p
}

function failure(fn: () => unknown): AppError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(AppError)
    return err as AppError
  }
  throw new Error('expected a failure')
}

describe('IDX reader', () => {
  const images = idx([2, 2, 3], [0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255])

  it('reads plain and gzipped files: dims and row-major bytes', () => {
    for (const p of [file('a.idx', images), file('a.idx.gz', gzipSync(images))]) {
      const r = readIdx(p, { rank: 3, dims: [undefined, 2, 3] })
      expect(r.dims).toEqual([2, 2, 3])
      expect(Array.from(r.data)).toEqual([0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255])
    }
    expect(Array.from(parseIdx(idx([3], [7, 8, 9]), 'labels', { rank: 1 }).data)).toEqual([7, 8, 9])
  })

  it.each([
    [
      'bad magic bytes',
      Buffer.concat([Buffer.from([1, 2]), images.subarray(2)]),
      {},
      /bad magic number 0x01020803/,
    ],
    ['float element type', idx([2], [0, 0], 0x0d), {}, /element type 0x0d .* not supported/],
    ['wrong rank', images, { rank: 1 }, /declares rank 3, expected 1/],
    ['wrong image size', images, { dims: [undefined, 28, 28] }, /dimension 1 is 2, expected 28/],
    [
      'truncated payload',
      images.subarray(0, images.length - 1),
      {},
      /= 12 bytes of data, file has 11 \(truncated\)/,
    ],
    [
      'trailing bytes',
      Buffer.concat([images, Buffer.from([0])]),
      {},
      /file has 13 \(trailing bytes\)/,
    ],
    ['truncated header', images.subarray(0, 10), {}, /too short for a rank-3 header/],
    ['tiny file', Buffer.from([0, 0]), {}, /too short for an IDX header/],
    ['truncated gzip', gzipSync(images).subarray(0, 20), {}, /gzip data is corrupt or truncated/],
  ])(
    'refuses a corrupt file (%s) with INVALID_MODEL naming the problem',
    (_, bytes, expect_, message) => {
      const p = file('bad.idx', bytes)
      const err = failure(() => readIdx(p, expect_))
      expect(err.code).toBe('INVALID_MODEL')
      expect(err.message).toContain(p)
      expect(err.message).toMatch(message)
    },
  )

  it('reports a missing file as NOT_FOUND', () => {
    expect(failure(() => readIdx(join(dir, 'nope.idx'))).code).toBe('NOT_FOUND')
  })
})

describe('Fashion-MNIST loader', () => {
  it('names the Debian package when the data is missing', () => {
    const err = failure(() => loadFashionMnist('test', join(dir, 'empty')))
    expect(err.code).toBe('NOT_FOUND')
    expect(err.message).toMatch(/install the Debian package dataset-fashion-mnist/)
  })

  it('refuses image and label files that disagree', () => {
    const d = mkdtempSync(join(dir, 'fm-'))
    writeFileSync(
      join(d, 't10k-images-idx3-ubyte.gz'),
      gzipSync(idx([2, 28, 28], new Array(2 * 784).fill(0))),
    )
    writeFileSync(join(d, 't10k-labels-idx1-ubyte.gz'), gzipSync(idx([3], [1, 2, 3])))
    expect(failure(() => loadFashionMnist('test', d)).message).toMatch(/2 images but 3 labels/)
    writeFileSync(join(d, 't10k-labels-idx1-ubyte.gz'), gzipSync(idx([2], [1, 12])))
    expect(failure(() => loadFashionMnist('test', d)).message).toMatch(/label 12 at index 1/)
    writeFileSync(join(d, 't10k-labels-idx1-ubyte.gz'), gzipSync(idx([2], [1, 9])))
    const ok = loadFashionMnist('test', d)
    expect([ok.n, Array.from(ok.labels)]).toEqual([2, [1, 9]])
  })

  it('reads the real test split: 10,000 images of 28x28, 1,000 per class', () => {
    const { images, labels, n } = loadFashionMnist('test', FASHION_MNIST_DIR)
    expect(n).toBe(10000)
    expect(images.length).toBe(10000 * 784)
    const perClass = new Array(10).fill(0)
    for (const l of labels) perClass[l]++
    expect(perClass).toEqual(new Array(10).fill(1000))
    expect(Math.max(...images.subarray(0, 784))).toBeGreaterThan(100) // not an empty image
  })
})
