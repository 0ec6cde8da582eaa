/**
 * Expert deltas (issue #19), the knowledge step: the shared model and the kept experts' exclusive knowledge come
 * from the old package's twin graph unchanged (its `<w>` initializers hold θ_s, its `<w>.twin_*` factors every
 * expert's compressed delta: naming convention in shared/src/schemas/twin-package.ts); only the experts given as
 * model files get v_t = θ_t − θ_s against that same θ_s, compressed by the recipe's exclusive spec. The shared
 * model is not re-merged: a new expert changes nothing the old experts were compressed against.
 * @see https://arxiv.org/abs/2406.15479
 * @module
 */
import type { PackageManifest } from '@twinserve/shared'
import { AppError } from '@twinserve/shared'
import {
  expertFactors,
  type FactorsWithShared,
  type LowRankFactors,
  type MatrixFactors,
  stackExperts,
  type VectorFactors,
} from '../../factors/exclusive-factors.ts'
import { readExclusiveFactors } from '../../model/materialize.ts'
import type { OnnxModel } from '../import/read-onnx.ts'
import { floatBytes, readFloat32 } from '../import/tensor-data.ts'
import type { BuildContext } from './build-context.ts'
import {
  ExclusiveCollector,
  type ExclusiveKnowledge,
  type ExclusiveRow,
} from './exclusive-knowledge.ts'
import type { PlannedExpert } from './expert-changes.ts'
import { writeGraph } from './graph-file.ts'
import type { MergedModel } from './shared-merge.ts'

/** The old package's twin graph, read: its initializers (inline) and the manifest that describes them. */
export interface OldPackage {
  dir: string
  manifest: PackageManifest
  twin: OnnxModel
}

/**
 * Writes the shared model (the base graph holding the old package's θ_s in every float initializer) into `rel`,
 * and collects the exclusive knowledge of the new version's experts against it.
 * @param models the experts given as model files, opened, by name
 */
export async function deltaKnowledge(
  ctx: BuildContext,
  old: OldPackage,
  planned: readonly PlannedExpert[],
  models: ReadonlyMap<string, OnnxModel>,
  rel: string,
): Promise<MergedModel & { exclusive: ExclusiveKnowledge; reused: string[] }> {
  // A shared basis is computed from every expert together: adding or dropping one changes it for all of them.
  if (
    ctx.recipe.exclusive.shared_basis !== undefined ||
    old.manifest.exclusive.some((e) => e.basis)
  )
    throw new AppError(
      'INVALID_REQUEST',
      `exclusive.shared_basis: a package whose experts share one basis per matrix cannot take expert deltas (the basis is computed from all experts together); rebuild it in full without --from`,
    )
  const factors = new Map<string, FactorsWithShared>(
    readExclusiveFactors(old.twin.graph, old.manifest).map((f) => [f.name, f]),
  )
  const rowsOf = new Map(old.manifest.exclusive.map((e) => [e.name, e]))
  const fresh = planned.filter((p) => p.source === 'model')
  // Under `exclusive.budget` the new experts get the budget's fraction of their own files' bytes (the kept experts'
  // factors are not re-spent): with no bytes here, the budget would give them rank 0 everywhere.
  const freshBytes = fresh.reduce((a, p) => a + (models.get(p.name)?.sizeBytes ?? 0), 0)
  const collector = new ExclusiveCollector(
    ctx.selected,
    ctx.recipe.exclusive,
    fresh.length,
    freshBytes,
  )
  const floats = [...ctx.base.initializers.values()].filter((t) => t.dataType === 1)
  const step = ctx.reporter.step('shared model (reused) and new exclusive knowledge', floats.length)
  const reused: string[] = []
  let done = 0
  const written = await writeGraph(ctx, rel, ctx.base.model, 'shared', async (t) => {
    const name = t.name ?? ''
    const kept = old.twin.initializers.get(name)
    if (!kept)
      throw new AppError(
        'INVALID_REQUEST',
        `the base model's tensor '${name}' is not in package ${old.dir}: the recipe's base is not the model the package was built from`,
      )
    const shared = await readFloat32(kept, `${old.dir}: ${name}`)
    if (collector.has(name)) {
      const experts: Float32Array[] = []
      for (const p of fresh) {
        const m = models.get(p.name)
        experts.push(await readFloat32(m?.initializers.get(name) ?? {}, `${m?.path}: ${name}`))
      }
      await collector.add(name, shared, experts)
    }
    reused.push(name)
    step.tick(++done, floats.length)
    return floatBytes(shared)
  })
  // A budget allocates the ranks once every matrix is in (a no-op for rank and energy targets).
  const computed = collector.finish()
  const exclusive = spliceKnowledge(planned, { factors, rowsOf, computed })
  step.done(
    `${reused.length} shared tensors and ${planned.length - fresh.length} experts' factors reused, ${fresh.length} expert(s) compressed`,
  )
  return { model: written.skeleton, files: written.files, exclusive, reused }
}

/** The new version's exclusive knowledge: kept experts' columns from the package, fresh ones from `computed`. */
function spliceKnowledge(
  planned: readonly PlannedExpert[],
  from: {
    factors: ReadonlyMap<string, FactorsWithShared>
    rowsOf: ReadonlyMap<string, PackageManifest['exclusive'][number]>
    computed: ExclusiveKnowledge
  },
): ExclusiveKnowledge {
  const out: ExclusiveKnowledge = { matrices: [], vectors: [], rows: [] }
  const freshIndex = new Map(
    planned.filter((p) => p.source === 'model').map((p, j) => [p.name, j] as const),
  )
  for (const row of from.computed.rows) {
    const oldRow = from.rowsOf.get(row.name)
    const old = from.factors.get(row.name)
    // A tensor the package has no knowledge of (rank 0 for every expert, or a recipe that selects more than the
    // package was built with) would give the kept experts nothing where the recipe says they have something.
    if (!oldRow && row.kind === 'vector')
      throw new AppError(
        'INVALID_REQUEST',
        `the recipe selects '${row.name}' for exclusive knowledge, but the package has none for it: the recipe's exclusive spec is not the one the package was built with`,
      )
    const freshOf = (p: PlannedExpert) => freshIndex.get(p.name) ?? -1
    const merged: ExclusiveRow = {
      name: row.name,
      kind: row.kind,
      shape: row.shape,
      ...(row.kind === 'matrix'
        ? {
            ranks: planned.map((p) =>
              p.source === 'package'
                ? (oldRow?.ranks?.[p.oldIndex] ?? 0)
                : (row.ranks?.[freshOf(p)] ?? 0),
            ),
          }
        : {}),
      relError: planned.map((p) =>
        p.source === 'package'
          ? (oldRow?.relError[p.oldIndex] ?? 0)
          : (row.relError[freshOf(p)] ?? 0),
      ),
    }
    out.rows.push(merged)
    if (row.kind === 'vector') {
      const fresh = from.computed.vectors.find((v) => v.name === row.name)
      const d = row.shape[0] as number
      const delta = new Float32Array(planned.length * d) // [T, d]
      planned.forEach((p, t) => {
        const src =
          p.source === 'package'
            ? (old as VectorFactors | undefined)?.delta.subarray(
                p.oldIndex * d,
                (p.oldIndex + 1) * d,
              )
            : fresh?.delta.subarray(freshOf(p) * d, (freshOf(p) + 1) * d)
        if (src) delta.set(src, t * d)
      })
      out.vectors.push({ kind: 'vector', name: row.name, size: d, delta })
      continue
    }
    const [rows, cols] = row.shape as [number, number]
    const fresh = from.computed.matrices.find((m) => m.name === row.name)
    const none: LowRankFactors = {
      u: new Float32Array(0),
      sigma: new Float32Array(0),
      vt: new Float32Array(0),
    }
    const parts = planned.map((p) => {
      if (p.source === 'package')
        return old?.kind === 'matrix' ? expertFactors(old as MatrixFactors, p.oldIndex) : none
      return fresh ? expertFactors(fresh, freshOf(p)) : none
    })
    const stacked = stackExperts(row.name, rows, cols, parts)
    if (stacked) out.matrices.push(stacked)
  }
  return out
}
