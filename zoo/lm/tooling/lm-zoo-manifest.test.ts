/**
 * models/zoo.json (issue 14) describes the committed files truthfully: hashes and sizes, one graph shared by the
 * base and every expert, the tied embedding, the size budget, and a perplexity table in which each expert beats
 * the base on its own domain.
 */
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { type OnnxModel, readOnnx, tensorDims } from '@twinserve/gpu-runner/build'
import { toNumber } from '@twinserve/gpu-runner/onnx'
import { describe, expect, it } from 'vitest'
import { LM_ZOO_DIR, LM_ZOO_DOMAINS, lmZooPath, readLmZooManifest } from './lm-zoo-files.ts'

const manifest = readLmZooManifest()
/** The LM package must fit 30 MB in all; the zoo keeps 8 MB of that for what the builder adds. */
const ZOO_BUDGET_BYTES = 22 * 1024 * 1024
const PACKAGE_BUDGET_BYTES = 30 * 1024 * 1024

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.name === '.cache' || e.name === '__pycache__') return []
    const path = join(dir, e.name)
    return e.isDirectory() ? filesUnder(path) : [path]
  })
}

/** Everything but initializer values: nodes with wiring and attributes, initializer names/shapes/types, I/O. */
function graphSignature(m: OnnxModel): string {
  const nodes = (m.graph.node ?? []).map((n) =>
    JSON.stringify([
      n.opType,
      n.input,
      n.output,
      (n.attribute ?? []).map((a) => [a.name, a.type, a.i == null ? null : toNumber(a.i), a.ints]),
    ]),
  )
  const inits = [...m.initializers.values()].map((t) => `${t.name}:${t.dataType}:${tensorDims(t)}`)
  const io = [...(m.graph.input ?? []), ...(m.graph.output ?? [])].map((v) => JSON.stringify(v))
  return [...nodes, ...inits, ...io].join('\n')
}

function expertFile(domain: string): string {
  const entry = manifest.models[domain]
  if (entry === undefined) throw new Error(`zoo.json has no model ${domain}`)
  return lmZooPath(entry.file)
}

describe('LM zoo manifest', () => {
  it('lists a base and one expert per domain with their true sizes and hashes', () => {
    expect(Object.keys(manifest.models).sort()).toEqual(['base', ...LM_ZOO_DOMAINS].sort())
    for (const entry of Object.values(manifest.models)) {
      const bytes = readFileSync(lmZooPath(entry.file))
      expect(bytes.byteLength).toBe(entry.bytes)
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(entry.sha256)
    }
  })

  it('fits the committed-size budget: the zoo 22 MB, with the twin package the builder adds 30 MB', () => {
    const files = filesUnder(LM_ZOO_DIR)
    const size = (fs: string[]) => fs.reduce((sum, f) => sum + statSync(f).size, 0)
    const pkg = join(LM_ZOO_DIR, 'package')
    expect(size(files.filter((f) => !f.startsWith(pkg)))).toBeLessThan(ZOO_BUDGET_BYTES)
    expect(size(files)).toBeLessThan(PACKAGE_BUDGET_BYTES)
  })

  it('has experts whose graphs equal the base graph except for initializer values', async () => {
    const base = await readOnnx(expertFile('base'))
    const signature = graphSignature(base)
    expect(base.graph.node?.length).toBeGreaterThan(100)
    for (const domain of LM_ZOO_DOMAINS) {
      const expert = await readOnnx(expertFile(domain))
      expect(graphSignature(expert) === signature, domain).toBe(true)
      const a = base.initializers.get('wte.weight')?.rawData
      const b = expert.initializers.get('wte.weight')?.rawData
      expect(a && b && Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0, domain).toBe(true)
    }
  })

  it('ties the token embedding to the LM head: one initializer feeds a Gather and a Gemm(transB=1)', async () => {
    const base = await readOnnx(expertFile('base'))
    const users = (base.graph.node ?? []).filter((n) => (n.input ?? []).includes('wte.weight'))
    expect(users.map((n) => n.opType).sort()).toEqual(['Gather', 'Gemm'])
    const transB = users
      .find((n) => n.opType === 'Gemm')
      ?.attribute?.find((a) => a.name === 'transB')?.i
    expect(transB == null ? null : toNumber(transB)).toBe(1)
    expect(manifest.model.tiedWeights.map((t) => t.initializer)).toEqual(['wte.weight'])
  })

  it('records each expert with a clearly lower perplexity than the base on its own domain', () => {
    const { table } = manifest.perplexity
    for (const domain of LM_ZOO_DOMAINS) {
      const own = table[domain]?.[domain] ?? Number.NaN
      const base = table.base?.[domain] ?? Number.NaN
      expect(own, domain).toBeLessThan(0.95 * base)
    }
  })
})
