/**
 * Build step for data-informed merges (`regmean`): the Gram matrix G_i = X_iᵀX_i / rows of every linear weight's
 * inputs, run through expert i on its own routing examples (the train split: validation and held-out data stay
 * out of every fit). One expert session at a time; each session computes the Grams itself (the graph gets a
 * Reshape to [rows, d_in], a Cast to float64 and a Gemm Xᵀ·X per weight as extra outputs), so activations never
 * leave onnxruntime and only the [d_in, d_in] sums come back per batch, accumulated in float64. Each expert's
 * Grams go to disk when it is done (GramStore), and a merge reads one weight's at a time.
 *
 * A matrix gets Grams when every use is a MatMul/Gemm weight (weight-sites.ts) in one orientation and no Gemm has
 * transA; its inputs over several uses (a tied weight) are summed. Embedding tables (Gather) and anything else
 * are merged by the strategy's fallback (the weighted average).
 * @see https://arxiv.org/abs/2212.09849 (RegMean)
 * @module
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AppError } from '@twinserve/shared'
import type { TensorGrams } from '../../merge/types.ts'
import { int64Tensor, valueInfo } from '../../onnx/graph-builder.ts'
import { type INodeProto, type ModelProto, onnx, TensorDataType } from '../../onnx/proto.ts'
import { GraphEditor } from '../graph/graph-editor.ts'
import { openModel } from '../graph/probe.ts'
import { intAttr, type TensorSite } from '../graph/weight-sites.ts'
import { stackExamples } from '../import/model-io.ts'
import { batchesOf } from '../router/features.ts'
import type { BuildContext } from './build-context.ts'
import { writeModel } from './write-model.ts'

/** A linear weight whose input Grams RegMean solves with. */
export interface GramSite {
  tensor: string
  /** The tensors multiplied by it (input 0 of each MatMul/Gemm that uses it), one per distinct tensor. */
  inputs: string[]
  dIn: number
  transposed: boolean
}

/** Rows per session run: a batch of examples (times their positions for sequence models). */
const BATCH = 64

/** The matrices RegMean can solve for, and why the others fall back to the average. */
export function gramSites(
  nodes: readonly INodeProto[],
  sites: ReadonlyMap<string, TensorSite>,
): { sites: GramSite[]; averaged: { tensor: string; reason: string }[] } {
  const out: GramSite[] = []
  const averaged: { tensor: string; reason: string }[] = []
  for (const site of sites.values()) {
    if (site.kind !== 'matrix') continue
    const uses = site.uses
    const why = uses.some((u) => u.op === 'Gather')
      ? 'an embedding table (Gather)'
      : uses.some((u) => u.op === 'Gemm' && intAttr(nodes[u.node] as INodeProto, 'transA', 0) === 1)
        ? 'a Gemm with transA'
        : new Set(uses.map((u) => u.transposed)).size > 1
          ? 'used in both orientations'
          : undefined
    if (why) {
      averaged.push({ tensor: site.name, reason: why })
      continue
    }
    const transposed = uses[0]?.transposed ?? false
    const inputs = [...new Set(uses.map((u) => nodes[u.node]?.input?.[0] ?? ''))]
    out.push({
      tensor: site.name,
      inputs,
      dIn: site.shape[transposed ? 1 : 0],
      transposed,
    })
  }
  return { sites: out, averaged }
}

/**
 * The model with, per site, an output `<prefix>gram/<k>` = Σ over its inputs of Xᵀ·X ([d_in, d_in]) and one
 * `<prefix>rows/<k>` per input (the Reshape's shape: [rows, d_in]).
 */
export function gramModel(
  model: ModelProto,
  sites: readonly GramSite[],
): { model: ModelProto; grams: string[]; rows: string[][] } {
  const copy = onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish()) as ModelProto
  const graph = copy.graph
  if (!graph) throw new AppError('INVALID_MODEL', 'model has no graph')
  const editor = new GraphEditor(graph, 'regmean/')
  const grams: string[] = []
  const rows: string[][] = []
  const shapes = new Map<number, string>()
  const outputs = [...(graph.output ?? [])]
  for (const site of sites) {
    let shape = shapes.get(site.dIn)
    if (!shape) {
      shape = editor.fresh(`shape_${site.dIn}`)
      editor.initializer(int64Tensor(shape, [-1, site.dIn], [2]))
      shapes.set(site.dIn, shape)
    }
    const parts: string[] = []
    const siteRows: string[] = []
    for (const x of site.inputs) {
      const flat = editor.node('Reshape', [x, shape], { hint: 'rows' })
      // In float64: a float32 Gram of fewer rows than columns comes out slightly indefinite, and RegMean's
      // alpha = 1 solve (no diagonal boost) then fails its Cholesky factorisation.
      const wide = editor.node('Cast', [flat], {
        attrs: { to: TensorDataType.DOUBLE },
        hint: 'rows64',
      })
      parts.push(editor.node('Gemm', [wide, wide], { attrs: { transA: 1 }, hint: 'gram' }))
      const r = editor.node('Shape', [flat], { hint: 'rows_shape' })
      siteRows.push(r)
      outputs.push(valueInfo(r, 'int64', [2]))
    }
    const g =
      parts.length === 1 ? (parts[0] as string) : editor.node('Sum', parts, { hint: 'gram' })
    grams.push(g)
    rows.push(siteRows)
    outputs.push(valueInfo(g, 'double', [site.dIn, site.dIn]))
  }
  graph.output = outputs
  return { model: copy, grams, rows }
}

/**
 * The Grams on disk, one float64 file per (weight, expert) in a dot-named folder of the staging directory (swept
 * before the package is renamed into place): a merge reads one weight's T Grams at a time, so the build holds
 * d_in² numbers per expert for one weight, not for every weight of every expert.
 */
export class GramStore {
  private readonly index: Map<string, number>

  constructor(
    private readonly dir: string,
    readonly sites: readonly GramSite[],
    private readonly experts: number,
  ) {
    this.index = new Map(sites.map((s, k) => [s.tensor, k]))
  }

  file(site: number, expert: number): string {
    return join(this.dir, `${site}-${expert}.f64`)
  }

  /** One weight's Grams, every expert's, or undefined when it is not a Gram site. */
  async read(tensor: string): Promise<TensorGrams | undefined> {
    const k = this.index.get(tensor)
    const site = k === undefined ? undefined : this.sites[k]
    if (k === undefined || !site) return undefined
    const perExpert: Float64Array[] = []
    for (let i = 0; i < this.experts; i++) {
      const bytes = await readFile(this.file(k, i))
      perExpert.push(new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8).slice())
    }
    return { perExpert, dIn: site.dIn, transposed: site.transposed }
  }

  /** Every weight's Grams in memory (small models: the benchmarks' in-memory merges, tests). */
  async toMap(): Promise<Map<string, TensorGrams>> {
    const out = new Map<string, TensorGrams>()
    for (const s of this.sites) {
      const g = await this.read(s.tensor)
      if (g) out.set(s.tensor, g)
    }
    return out
  }
}

/**
 * Every Gram site's mean Gram per expert, from the train split's examples of that expert, written to disk as each
 * expert finishes.
 * @throws AppError INVALID_REQUEST when an expert has no routing examples to compute them on
 */
export async function collectGrams(ctx: BuildContext): Promise<GramStore> {
  const { sites } = gramSites(ctx.base.graph.node ?? [], ctx.sites)
  const store = new GramStore(join(ctx.staging, '.regmean-grams'), sites, ctx.experts.length)
  await mkdir(join(ctx.staging, '.regmean-grams'), { recursive: true })
  const step = ctx.reporter.step('regmean: Gram matrices of the linear inputs', ctx.experts.length)
  for (const [i, expert] of ctx.experts.entries()) {
    const name = ctx.expertNames[i] as string
    const examples = ctx.split.train.filter((e) => e.expert === i)
    if (examples.length === 0)
      throw new AppError(
        'INVALID_REQUEST',
        `regmean: expert '${name}' has no routing examples in the train split, so its layers' input Grams cannot be computed (add router data for it)`,
      )
    const probe = gramModel(expert.model, sites)
    // The expert's tensors stay where they are; a scratch copy in the staging directory is what onnxruntime opens.
    const written = await writeModel(join(ctx.staging, `.regmean-${i}.onnx`), probe.model, {
      externalAbove: ctx.externalAbove,
    })
    const opened = await openModel(written.skeleton, ctx.staging)
    const sums = sites.map((s) => new Float64Array(s.dIn * s.dIn))
    const counts = sites.map(() => 0)
    try {
      const fetch = [...probe.grams, ...probe.rows.flat()]
      for (const group of batchesOf(examples, BATCH)) {
        const out = await opened.session.run(
          stackExamples(
            ctx.inputs,
            group.map((g) => g.inputs),
            'router data',
          ),
          fetch,
        )
        const read = (name: string) => {
          const t = out[name]
          if (!t) throw new AppError('INTERNAL', `regmean: onnxruntime returned no '${name}'`)
          return t.data
        }
        for (let k = 0; k < sites.length; k++) {
          const g = read(probe.grams[k] as string) as Float64Array
          const sum = sums[k] as Float64Array
          for (let j = 0; j < sum.length; j++) sum[j] = (sum[j] as number) + (g[j] as number)
          for (const r of probe.rows[k] as string[])
            counts[k] = (counts[k] as number) + Number((read(r) as BigInt64Array)[0])
        }
      }
    } finally {
      await opened.session.release()
      await opened.cleanup()
      for (const f of written.files) await rm(f.path, { force: true })
    }
    for (let k = 0; k < sites.length; k++) {
      const sum = sums[k] as Float64Array
      const n = Math.max(counts[k] as number, 1)
      for (let j = 0; j < sum.length; j++) sum[j] = (sum[j] as number) / n
      await writeFile(store.file(k, i), new Uint8Array(sum.buffer, sum.byteOffset, sum.byteLength))
    }
    step.tick(i + 1, ctx.experts.length)
  }
  step.done(`${sites.length} linear weights, ${ctx.experts.length} experts`)
  return store
}

// One build merges with regmean up to 1 + variants times; the Grams depend only on the context, so they are
// computed once per build context.
const cache = new WeakMap<BuildContext, Promise<GramStore>>()

/** collectGrams, once per build context. */
export function gramsOf(ctx: BuildContext): Promise<GramStore> {
  let p = cache.get(ctx)
  if (!p) {
    p = collectGrams(ctx)
    cache.set(ctx, p)
  }
  return p
}
