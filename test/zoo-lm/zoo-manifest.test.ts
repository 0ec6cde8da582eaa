/**
 * zoo/lm/zoo.json (issue 14) describes the committed files truthfully: hashes and sizes, the shared graph of
 * all experts (checked with the builder's own graph comparison), the tied embedding, the size budget, and a
 * perplexity table in which each expert beats the base on its own domain.
 */
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { firstGraphDifference } from '@twinserve/gpu-runner/src/build/compare-graphs.ts'
import { readOnnx } from '@twinserve/gpu-runner/src/build/read-onnx.ts'
import { toNumber } from '@twinserve/gpu-runner/src/onnx/proto.ts'
import { describe, expect, it } from 'vitest'
import { readZooManifest, ZOO_LM_DIR, ZOO_LM_DOMAINS, zooLmPath } from './zoo-lm-files.ts'

const manifest = readZooManifest()
/** The package must fit 30 MB in all; the zoo keeps 8 MB of that for the builder's output. */
const ZOO_BUDGET_BYTES = 22 * 1024 * 1024

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.name === '.cache' || e.name === '__pycache__') return []
    const path = join(dir, e.name)
    return e.isDirectory() ? filesUnder(path) : [path]
  })
}

describe('LM zoo manifest', () => {
  it('lists a base and one expert per domain with their true sizes and hashes', () => {
    expect(Object.keys(manifest.models).sort()).toEqual(['base', ...ZOO_LM_DOMAINS].sort())
    for (const entry of Object.values(manifest.models)) {
      const bytes = readFileSync(zooLmPath(entry.file))
      expect(bytes.byteLength).toBe(entry.bytes)
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(entry.sha256)
    }
  })

  it('fits the committed-size budget', () => {
    const total = filesUnder(ZOO_LM_DIR).reduce((sum, f) => sum + statSync(f).size, 0)
    expect(total).toBeLessThan(ZOO_BUDGET_BYTES)
  })

  it('has experts whose graphs equal the base graph except for float initializer values', async () => {
    const base = await readOnnx(zooLmPath('models', 'base.onnx'))
    for (const domain of ZOO_LM_DOMAINS) {
      const expert = await readOnnx(zooLmPath('models', `${domain}.onnx`))
      expect(firstGraphDifference(base, expert), domain).toBeNull()
      const a = base.initializers.get('wte.weight')?.rawData
      const b = expert.initializers.get('wte.weight')?.rawData
      expect(a && b && Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0).toBe(true)
    }
  })

  it('ties the token embedding to the LM head: one initializer feeds a Gather and a Gemm(transB=1)', async () => {
    const base = await readOnnx(zooLmPath('models', 'base.onnx'))
    const users = (base.graph.node ?? []).filter((n) => (n.input ?? []).includes('wte.weight'))
    expect(users.map((n) => n.opType).sort()).toEqual(['Gather', 'Gemm'])
    const gemm = users.find((n) => n.opType === 'Gemm')
    const transB = gemm?.attribute?.find((a) => a.name === 'transB')?.i
    expect(transB == null ? null : toNumber(transB)).toBe(1)
    expect(manifest.model.tiedWeights.map((t) => t.initializer)).toEqual(['wte.weight'])
  })

  it('records each expert with a clearly lower perplexity than the base on its own domain', () => {
    const { table } = manifest.perplexity
    for (const domain of ZOO_LM_DOMAINS) {
      const own = table[domain]?.[domain] ?? Number.NaN
      const base = table.base?.[domain] ?? Number.NaN
      expect(own, domain).toBeLessThan(0.95 * base)
    }
  })
})
