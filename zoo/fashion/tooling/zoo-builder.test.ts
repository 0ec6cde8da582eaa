import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { onnx } from '@twinserve/gpu-runner/onnx'
import { openSession, ort } from '@twinserve/gpu-runner/runtime'
import { scoreLogits } from '@twinserve/gpu-runner/train'
import { afterAll, describe, expect, it } from 'vitest'
import { loadTaskSplit } from './task-data.ts'
import { ZOO_TASK_NAMES } from './tasks.ts'
import { buildZoo, ZOO_RECIPE, type ZooRecipe } from './zoo-builder.ts'
import { readZooManifest } from './zoo-manifest.ts'

const dir = mkdtempSync(join(tmpdir(), 'twinserve-zoo-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

// A pico zoo on small real subsets: the same code path as `npm run zoo`, in about a second.
const recipe: ZooRecipe = {
  ...ZOO_RECIPE,
  layers: [784, 16, 10],
  base: { ...ZOO_RECIPE.base, epochs: 1 },
  expert: {
    'fashion-mnist': { epochs: 2, lr: 1e-3, batchSize: 32, lrSchedule: 'cosine', patience: 2 },
    digits: { epochs: 3, lr: 1e-3, batchSize: 32, lrSchedule: 'cosine', patience: 2 },
  },
  routingPerTask: 4,
}
const limits = { train: 300, val: 60, test: 100 }
const build = (name: string) =>
  buildZoo({
    outDir: join(dir, name),
    routingPath: join(dir, name, 'routing.jsonl'),
    routingLabel: 'routing.jsonl',
    recipe,
    limits,
  })

function graphOf(bytes: Uint8Array) {
  const g = onnx.ModelProto.decode(bytes).graph
  return JSON.stringify({
    name: g?.name,
    nodes: (g?.node ?? []).map((n) => [n.name, n.opType, n.input, n.output]),
    inits: (g?.initializer ?? []).map((t) => [t.name, t.dims, t.dataType]),
    io: [(g?.input ?? []).map((i) => i.name), (g?.output ?? []).map((o) => o.name)],
  })
}

describe('buildZoo (pico recipe, real data subsets)', () => {
  it('writes base + one expert per task with identical graphs, a valid zoo.json and routing data; deterministic', async () => {
    const { manifest } = await build('a')
    const out = join(dir, 'a')
    expect(readZooManifest(out)).toEqual(manifest)
    // One expert per task, in task order.
    expect(manifest.experts.map((e) => e.name)).toEqual([...ZOO_TASK_NAMES])
    const base = readFileSync(join(out, manifest.base.file))
    const meta = Object.fromEntries(
      onnx.ModelProto.decode(base).metadataProps.map((p) => [p.key, p.value]),
    )
    expect(meta['twinserve.role']).toBe('base')
    expect(JSON.parse(meta.classes ?? '[]')).toHaveLength(10)
    for (const e of manifest.experts) {
      const bytes = readFileSync(join(out, e.file))
      expect(graphOf(bytes)).toBe(graphOf(base))
      expect(e.training.initFrom).toBe('base')
      const m = Object.fromEntries(
        onnx.ModelProto.decode(bytes).metadataProps.map((p) => [p.key, p.value]),
      )
      expect(m.task).toBe(e.name)
      expect(m.fine_tuned_from).toContain(manifest.base.sha256)
    }
    const lines = readFileSync(join(out, 'routing.jsonl'), 'utf8').trimEnd().split('\n')
    expect(lines).toHaveLength(6 * 4)
    expect(new Set(lines.map((l) => (JSON.parse(l) as { expert: string }).expert)).size).toBe(6)

    // Regenerating gives bit-identical files (same thread count, same machine).
    const again = await build('b')
    for (const f of [
      'zoo.json',
      'base.onnx',
      ...again.manifest.experts.map((e) => e.file),
      'routing.jsonl',
    ])
      expect(readFileSync(join(dir, 'b', f), 'latin1'), f).toBe(
        readFileSync(join(out, f), 'latin1'),
      )
  })

  it("the exported expert files reproduce the trainer's recorded test accuracies", async () => {
    const m = readZooManifest(join(dir, 'a'))
    for (const e of m.experts) {
      const { session } = await openSession(join(dir, 'a', e.file), { provider: 'cpu' })
      try {
        const test = loadTaskSplit(e.name, 'test', { limit: limits.test })
        const out = await session.run({ pixels: new ort.Tensor('float32', test.x, [test.n, 784]) })
        const acc = scoreLogits(out.logits?.data as Float32Array, test.y, 10).accuracy
        expect(Math.round(acc * 1e4) / 1e4).toBe(e.testAccuracy[e.name])
      } finally {
        await session.release()
      }
    }
  })

  it('readZooManifest refuses a missing or malformed zoo.json', () => {
    expect(() => readZooManifest(join(dir, 'none'))).toThrow(/missing \(run `npm run zoo`\)/)
    const bad = join(dir, 'a', 'zoo.json')
    const text = readFileSync(bad, 'utf8')
    writeFileSync(bad, text.replace('"formatVersion": 1', '"formatVersion": 2'))
    expect(() => readZooManifest(join(dir, 'a'))).toThrow(/formatVersion/)
    writeFileSync(bad, text)
  })
})
