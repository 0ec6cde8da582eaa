import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { onnx } from '@twinserve/gpu-runner/onnx'
import { openSession, ort } from '@twinserve/gpu-runner/runtime'
import { scoreLogits } from '@twinserve/gpu-runner/train'
import { describe, expect, it } from 'vitest'
import { loadTaskSplit } from './task-data.ts'
import { sha256Hex } from './zoo-builder.ts'
import { DEMO_ZOO_DIR, readZooManifest } from './zoo-manifest.ts'

// The committed demo zoo (zoo/fashion/models), as a fresh clone serves it without training.
const dir = resolve(import.meta.dirname, '../../..', DEMO_ZOO_DIR)
const manifest = readZooManifest(dir)
const files = [manifest.base, ...manifest.experts]

function graphOf(bytes: Uint8Array): string {
  const g = onnx.ModelProto.decode(bytes).graph
  return JSON.stringify([
    g?.name,
    (g?.node ?? []).map((n) => [n.name, n.opType, n.input, n.output]),
    (g?.initializer ?? []).map((t) => [t.name, t.dims, t.dataType]),
    (g?.input ?? []).map((v) => v.name),
    (g?.output ?? []).map((v) => v.name),
  ])
}

describe('bundled demo zoo', () => {
  it('has every listed file intact, within the size budget, with identical graphs', () => {
    expect(manifest.experts.length).toBeGreaterThanOrEqual(6)
    const graphs = files.map((f) => {
      const bytes = readFileSync(join(dir, f.file))
      expect(sha256Hex(bytes), f.file).toBe(f.sha256)
      expect(bytes.length).toBe(f.bytes)
      return graphOf(bytes)
    })
    expect(new Set(graphs).size).toBe(1)
    expect(manifest.totalBytes).toBeLessThanOrEqual(7 * 1024 * 1024)
    expect(manifest.input).toMatchObject({ name: 'pixels', shape: ['batch', 784] })
    expect(manifest.output).toMatchObject({ name: 'logits', shape: ['batch', 10] })
  })

  it('each expert beats the base on its own task by a clear margin (recorded)', () => {
    for (const e of manifest.experts) {
      const own = e.testAccuracy[e.name] ?? 0
      const base = manifest.base.testAccuracy[e.name] ?? 1
      expect(own - base, e.name).toBeGreaterThan(0.03)
    }
  })

  it('reproduces the recorded test accuracies from the ONNX files on the real test splits', async () => {
    const runs: Array<[string, string]> = [
      ...manifest.experts.map((e) => [e.file, e.name] as [string, string]),
      ...manifest.tasks.map((t) => [manifest.base.file, t.name] as [string, string]),
    ]
    const recorded = (file: string, task: string) =>
      file === manifest.base.file
        ? manifest.base.testAccuracy[task]
        : manifest.experts.find((e) => e.file === file)?.testAccuracy[task]
    const tests = new Map(manifest.tasks.map((t) => [t.name, loadTaskSplit(t.name, 'test')]))
    for (const [file, task] of runs) {
      const { session } = await openSession(join(dir, file), { provider: 'cpu' })
      try {
        const test = tests.get(task)
        if (!test) throw new Error(`no test split for ${task}`)
        const out = await session.run({ pixels: new ort.Tensor('float32', test.x, [test.n, 784]) })
        const acc = scoreLogits(out.logits?.data as Float32Array, test.y, 10).accuracy
        // ORT's initializer (prepacked) kernels may round differently from the trainer's weights-as-inputs
        // session; a flipped near-tie moves accuracy by 1/n at most.
        expect(
          Math.abs(acc - (recorded(file, task) ?? -1)),
          `${file} on ${task}`,
        ).toBeLessThanOrEqual(1.5 / test.n)
      } finally {
        await session.release()
      }
    }
  })
})
