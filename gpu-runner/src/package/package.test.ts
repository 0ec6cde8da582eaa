import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { PackageManifest } from '@twinserve/shared'
import { afterAll, describe, expect, it } from 'vitest'
import { loadPackage } from './load-package.ts'
import { type ManifestWithoutFiles, writePackage } from './write-package.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-pkg-'))
afterAll(() => rm(root, { recursive: true, force: true }))

const manifest: ManifestWithoutFiles = {
  format: 'twinserve.twin-package',
  formatVersion: 1,
  name: 'tiny',
  createdAt: '2026-11-27T00:00:00Z',
  experts: [{ name: 'a', index: 0 }],
  inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }],
  model: { file: 'model.onnx' },
  router: { kind: 'prototype', feature: 'x', featureSize: 4 },
  exclusive: [],
  variants: [
    { name: 'shared', file: 'variants/shared.onnx', description: 'shared only', exclusive: false },
  ],
  recipe: {},
}
const files = { 'model.onnx': Uint8Array.of(1, 2, 3), 'variants/shared.onnx': Uint8Array.of(4, 5) }

describe('twin package write/load', () => {
  it('round-trips and verifies hashes', async () => {
    const dir = join(root, 'ok')
    await writePackage(dir, manifest, files)
    const pkg = await loadPackage(dir)
    expect(Array.from(pkg.model)).toEqual([1, 2, 3])
    expect(Array.from(pkg.variants.get('shared') ?? [])).toEqual([4, 5])
  })

  it('refuses an existing output directory without overwrite, and leaves it untouched', async () => {
    const dir = join(root, 'exists')
    await writePackage(dir, manifest, files)
    await expect(writePackage(dir, { ...manifest, name: 'other' }, files)).rejects.toThrow(
      /already exists/,
    )
    expect((await loadPackage(dir)).manifest.name).toBe('tiny')
  })

  it('refuses a tampered file', async () => {
    const dir = join(root, 'tampered')
    await writePackage(dir, manifest, files)
    await writeFile(join(dir, 'model.onnx'), Uint8Array.of(1, 2, 4))
    await expect(loadPackage(dir)).rejects.toThrow(/model.onnx does not match its sha256/)
  })

  it('refuses a missing file and a broken manifest', async () => {
    const dir = join(root, 'broken')
    await writePackage(dir, manifest, files)
    await rm(join(dir, 'variants/shared.onnx'))
    await expect(loadPackage(dir)).rejects.toThrow(
      /variants\/shared.onnx listed in the manifest is missing/,
    )
    const m = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as PackageManifest
    await writeFile(join(dir, 'manifest.json'), JSON.stringify({ ...m, formatVersion: 99 }))
    await expect(loadPackage(dir)).rejects.toThrow(/invalid at formatVersion/)
    await expect(loadPackage(join(root, 'nope'))).rejects.toThrow(/manifest.json is missing/)
  })
})
