/**
 * Exclusive knowledge (Twin-Merging §3.2): for each selected tensor, v_t = θ_t − θ_shared per expert; matrices
 * are compressed by truncated SVD (fixed rank or an energy fraction) and stacked over experts in the layout the
 * twin graph and the runner expect; vectors are kept exact. Collected tensor by tensor during the merge pass.
 * @see https://arxiv.org/abs/2406.15479
 * @module
 */
import { AppError, type ExclusiveSpec } from '@twinserve/shared'
import type { SharedBasis } from '../../factors/exclusive-factors.ts'
import {
  type MatrixFactors,
  stackExperts,
  type VectorFactors,
} from '../../factors/exclusive-factors.ts'
import { allocateBasisRanks } from '../../merge/basis-budget.ts'
import {
  allocateRanks,
  type CompressedDelta,
  compressDelta,
  selectTensors,
} from '../../merge/index.ts'
import {
  basisExperts,
  compressSharedBasis,
  keptEnergy,
  truncateBasis,
} from '../../merge/shared-basis.ts'
import type { TensorSite } from '../graph/weight-sites.ts'

export interface ExclusiveRow {
  name: string
  kind: 'matrix' | 'vector'
  shape: number[]
  /** Rank kept per expert (matrices). */
  ranks?: number[]
  /** ‖v_t − v̂_t‖ / ‖v_t‖ per expert (0 for vectors and for zero deltas). */
  relError: number[]
  /** The ranks of the matrix's shared basis (recipe `exclusive.shared_basis`); `ranks` are within it. */
  basis?: { rankIn: number; rankOut: number }
}

export interface ExclusiveKnowledge {
  matrices: MatrixFactors[]
  vectors: VectorFactors[]
  /** Every selected tensor, in graph order; matrices with total rank 0 are listed but carry no factors. */
  rows: ExclusiveRow[]
}

/**
 * A float tensor that some expert changed but that carries no exclusive knowledge: in the package every expert
 * gets its shared (merged) value, so a one-hot mix cannot reproduce the expert there. The build report lists these,
 * since nothing else would show that the experts' changes to them were dropped.
 */
export interface SharedOnlyRow {
  name: string
  shape: number[]
  /** Why: the rewrite cannot carry it (the site's reason), or the recipe's include/exclude left it out. */
  reason: string
  /** ‖θ_t − θ_shared‖ / ‖θ_t‖ per expert: how far the value the package gives each expert is from its own. */
  relError: number[]
}

/** The row for a tensor without exclusive knowledge, or undefined when every expert has the shared value. */
export function sharedOnlyRow(
  site: { name: string; shape: number[]; reason: string },
  shared: Float32Array,
  experts: readonly Float32Array[],
): SharedOnlyRow | undefined {
  const relError = experts.map((e) => {
    let diff = 0
    let norm = 0
    for (let i = 0; i < e.length; i++) {
      diff += ((e[i] as number) - (shared[i] as number)) ** 2
      norm += (e[i] as number) ** 2
    }
    return diff === 0 ? 0 : Math.sqrt(diff / Math.max(norm, Number.MIN_VALUE))
  })
  return relError.some((r) => r > 0) ? { ...site, relError } : undefined
}

/** Why a float tensor that is not selected carries no exclusive knowledge. */
export function notSelectedReason(site: TensorSite | undefined): string {
  if (site?.kind === 'unsupported') return site.reason
  return "left out by the recipe's exclusive.include / exclude"
}

/**
 * The tensors that get exclusive knowledge: by default every MatMul/Gemm weight and every 1-D parameter the
 * rewrite supports; with `include`, exactly what the patterns pick, and a picked tensor that cannot be rewritten
 * is an error naming why. Patterns that match nothing are errors (from selectTensors).
 */
export function selectExclusive(
  sites: ReadonlyMap<string, TensorSite>,
  spec: ExclusiveSpec,
): TensorSite[] {
  const names = [...sites.keys()]
  const picked = selectTensors(names, {
    ...(spec.include ? { include: spec.include } : {}),
    ...(spec.exclude ? { exclude: spec.exclude } : {}),
  })
  const out: TensorSite[] = []
  for (const name of picked) {
    const site = sites.get(name)
    if (!site) continue
    if (site.kind === 'unsupported') {
      if (spec.include)
        throw new AppError(
          'INVALID_REQUEST',
          `exclusive.include selects '${name}', which cannot carry exclusive knowledge: ${site.reason}`,
        )
      continue
    }
    out.push(site)
  }
  return out
}

/**
 * The compression target of each matrix: the first `tensors` rule whose pattern matches its name, else the
 * spec's own rank / energy. A rule that matches none of the matrices is an error naming it (a typo would
 * otherwise silently change nothing).
 */
export function compressionTargets(
  matrices: readonly string[],
  spec: ExclusiveSpec,
): (name: string) => { rank?: number; energy?: number } {
  const rules = (spec.tensors ?? []).map((rule) => {
    let hits: Set<string>
    try {
      hits = new Set(selectTensors(matrices, { include: [rule.match] }))
    } catch (err) {
      if (err instanceof AppError && err.code === 'INVALID_REQUEST')
        throw new AppError(
          'INVALID_REQUEST',
          `exclusive.tensors: ${err.message.replace(/ tensors \(/, ' matrices that carry exclusive knowledge (')}`,
        )
      throw err
    }
    return { rule, hits }
  })
  // A budget's matrices are compressed to a cap first and cut by allocateRanks later (ExclusiveCollector).
  const fallback =
    spec.rank !== undefined
      ? { rank: spec.rank }
      : spec.energy !== undefined
        ? { energy: spec.energy }
        : {}
  return (name) => {
    const r = rules.find((x) => x.hits.has(name))?.rule
    if (!r) return fallback
    return r.rank !== undefined ? { rank: r.rank } : { energy: r.energy as number }
  }
}

/**
 * Refuses a requested rank that no matrix it applies to can have (issue #16, case 7: `rank: 100000` was clamped
 * silently, and the package came out at 235% of the experts' bytes). A rank above min(rows, cols) of SOME
 * matrices is fine (a global rank 64 with a 10-class head): those are clamped, and the report lists each
 * matrix's rank.
 * @throws AppError INVALID_REQUEST naming the rank and the largest rank it could have
 */
export function checkRequestedRanks(
  matrices: readonly TensorSite[],
  targetOf: (name: string) => { rank?: number },
): void {
  const byRank = new Map<number, { name: string; rows: number; cols: number }[]>()
  for (const m of matrices) {
    const rank = targetOf(m.name).rank
    if (rank === undefined) continue
    const [rows = 0, cols = 0] = m.shape
    byRank.set(rank, [...(byRank.get(rank) ?? []), { name: m.name, rows, cols }])
  }
  for (const [rank, sites] of byRank) {
    const largest = sites.reduce((a, b) =>
      Math.min(b.rows, b.cols) > Math.min(a.rows, a.cols) ? b : a,
    )
    const max = Math.min(largest.rows, largest.cols)
    if (rank > max)
      throw new AppError(
        'INVALID_REQUEST',
        `exclusive rank ${rank} exceeds the rank of every matrix it applies to (the largest is ${max}: '${largest.name}' [${largest.rows}, ${largest.cols}]); factors of rank above min(rows, cols) store more than the dense difference, so give a rank ≤ ${max} or an energy fraction`,
      )
  }
}

/** Bytes one kept rank of a [rows, cols] matrix costs in the twin graph: U column, Vᵀ row, σ, expert index. */
export function bytesPerRank(rows: number, cols: number, dtype: ExclusiveSpec['dtype']): number {
  const factor = dtype === 'int8' ? 1 : dtype === 'float16' ? 2 : 4
  return (rows + cols) * factor + 4 + 8 // σ float32, expert_of_rank int64
}

/**
 * Bytes a matrix's shared basis at ranks ri (input side) and ro (output side, default ri) costs in the twin graph:
 * A [rows, ri] and B [ro, cols] as stored (`dtype`), the cores [T, ri, ro] float32, or float16 when the factors
 * are not float32 (basis-corrections.ts).
 */
export function basisBytes(
  rows: number,
  cols: number,
  T: number,
  ri: number,
  dtype: ExclusiveSpec['dtype'],
  ro = ri,
): number {
  const factor = dtype === 'int8' ? 1 : dtype === 'float16' ? 2 : 4
  const core = dtype === 'float32' ? 4 : 2
  return (rows * ri + ro * cols) * factor + T * ri * ro * core
}

/**
 * Under a budget, one (matrix, expert) pair keeps at most this many times its even share of the budget's ranks
 * until the allocation: it bounds what the builder holds between the merge pass and the allocation (the whole
 * spectrum of every matrix would be every expert's weights again).
 */
const BUDGET_CAP_OVER_EVEN_SHARE = 4

/** A matrix compressed to its cap, waiting for the budget's allocation. */
interface PendingMatrix {
  name: string
  rows: number
  cols: number
  parts: CompressedDelta[]
  /** ‖v_t‖²_F per expert (for the relative error after the cut). */
  energy: number[]
  /** Its row in `knowledge.rows`. */
  row: ExclusiveRow
}

/** A matrix's shared basis (at its cap, under a budget), waiting for its per-expert form. */
interface PendingBasis {
  name: string
  rows: number
  cols: number
  basis: SharedBasis
  /** ‖v_t‖²_F per expert. */
  energy: number[]
  row: ExclusiveRow
}

/** expert t's factors cut to rank k, with the relative error the dropped singular values add. */
function cutTo(p: CompressedDelta, rows: number, cols: number, k: number, energy: number) {
  const r = p.rank
  if (k >= r) return p
  const u = new Float32Array(rows * k) // [rows, k]
  for (let i = 0; i < rows; i++) u.set(p.u.subarray(i * r, i * r + k), i * k)
  let dropped = 0
  for (let j = k; j < r; j++) dropped += (p.sigma[j] as number) ** 2
  // The SVD's columns are orthogonal: the error at rank k is the measured one at the cap plus what is dropped.
  const err2 = p.relError ** 2 * energy + dropped
  return {
    ...p,
    u,
    sigma: p.sigma.slice(0, k),
    vt: p.vt.slice(0, k * cols),
    rank: k,
    relError: energy > 0 ? Math.sqrt(err2 / energy) : 0,
  }
}

/**
 * Collects the exclusive knowledge one tensor at a time, as the merge pass (shared-merge.ts) reads each tensor of
 * every expert once: v_t = θ_t − θ_shared per expert, matrices SVD-compressed, vectors kept exact. With a byte
 * budget (`exclusive.budget`), matrices wait at a capped rank until `finish()` allocates the budget over all of
 * them; read `knowledge` after `finish()`.
 */
export class ExclusiveCollector {
  readonly knowledge: ExclusiveKnowledge = { matrices: [], vectors: [], rows: [] }
  private readonly sites: Map<string, TensorSite>
  private readonly targetOf: (name: string) => { rank?: number; energy?: number }
  private readonly pending: PendingMatrix[] = []
  private readonly pendingBases: PendingBasis[] = []
  private vectorBytes = 0

  /**
   * @param expertsBytes the experts' bytes (their files), which `exclusive.budget` is a fraction of
   */
  constructor(
    selected: readonly TensorSite[],
    private readonly spec: ExclusiveSpec,
    private readonly T: number,
    private readonly expertsBytes = 0,
  ) {
    this.sites = new Map(selected.map((s) => [s.name, s]))
    this.targetOf = compressionTargets(
      selected.filter((s) => s.kind === 'matrix').map((s) => s.name),
      spec,
    )
    checkRequestedRanks(
      selected.filter((s) => s.kind === 'matrix'),
      this.targetOf,
    )
  }

  has(name: string): boolean {
    return this.sites.has(name)
  }

  /** Adds one selected tensor, given its shared value and each expert's. */
  async add(name: string, shared: Float32Array, experts: readonly Float32Array[]): Promise<void> {
    const site = this.sites.get(name)
    if (!site || site.kind === 'unsupported') return
    const deltas = experts.map((e) => e.map((x, i) => x - (shared[i] as number)))
    const out = this.knowledge
    if (site.kind === 'vector') {
      const d = site.shape[0]
      const delta = new Float32Array(this.T * d) // [T, d]
      deltas.forEach((v, t) => {
        delta.set(v, t * d)
      })
      out.vectors.push({ kind: 'vector', name, size: d, delta })
      out.rows.push({ name, kind: 'vector', shape: [d], relError: deltas.map(() => 0) })
      this.vectorBytes += delta.byteLength
      return
    }
    const [rows, cols] = site.shape
    if (this.spec.shared_basis !== undefined) {
      await this.addShared(name, rows, cols, deltas, this.spec.shared_basis)
      return
    }
    if (this.spec.budget !== undefined) {
      await this.addPending(name, rows, cols, deltas, this.spec.budget)
      return
    }
    const target = this.targetOf(name)
    const opt =
      target.rank !== undefined
        ? { rank: Math.min(target.rank, rows, cols) }
        : { energy: target.energy as number }
    const parts = []
    for (const delta of deltas) parts.push(await compressDelta(delta, rows, cols, opt))
    out.rows.push({
      name,
      kind: 'matrix',
      shape: [rows, cols],
      ranks: parts.map((p) => p.rank),
      relError: parts.map((p) => p.relError),
    })
    const stacked = stackExperts(name, rows, cols, parts)
    if (stacked) out.matrices.push(stacked)
  }

  /**
   * One basis for every expert of this matrix, a core per expert (merge/shared-basis.ts). Under a budget the
   * basis waits at a capped rank until `finish()` allocates the budget over every matrix.
   */
  private async addShared(
    name: string,
    rows: number,
    cols: number,
    deltas: readonly Float32Array[],
    target: { rank?: number; budget?: number },
  ): Promise<void> {
    const row: ExclusiveRow = { name, kind: 'matrix', shape: [rows, cols], relError: [] }
    this.knowledge.rows.push(row)
    if (target.budget !== undefined) {
      // This matrix's even share of the budget, in basis rank; it may get up to BUDGET_CAP_OVER_EVEN_SHARE times.
      const share = target.budget * this.T * rows * cols * 4
      let even = 1
      while (
        even < Math.max(rows, cols) &&
        basisBytes(rows, cols, this.T, even + 1, this.spec.dtype) <= share
      )
        even++
      const cap = Math.min(Math.max(rows, cols), Math.ceil(BUDGET_CAP_OVER_EVEN_SHARE * even))
      const { basis, energy } = await compressSharedBasis(deltas, rows, cols, cap)
      this.pendingBases.push({ name, rows, cols, basis, energy, row })
      return
    }
    const { basis, energy } = await compressSharedBasis(deltas, rows, cols, target.rank ?? 1)
    this.storeBasis({ name, rows, cols, basis, energy, row })
  }

  /** A matrix's final basis: its per-expert form, its row, and its factors. */
  private storeBasis(p: PendingBasis): void {
    const experts = basisExperts(p.basis, p.rows, p.cols, p.energy)
    p.row.ranks = experts.map((e) => e.rank)
    p.row.relError = experts.map((e) => e.relError)
    const stacked = stackExperts(p.name, p.rows, p.cols, experts)
    if (!stacked) return
    p.row.basis = { rankIn: p.basis.rankIn, rankOut: p.basis.rankOut }
    this.knowledge.matrices.push({ ...stacked, basis: p.basis })
  }

  /** Under `shared_basis.budget`: each matrix's basis rank by energy kept per byte (merge/basis-budget.ts). */
  private finishBases(budget: number): void {
    const total = budget * this.expertsBytes
    const left = total - this.vectorBytes
    if (left < 0)
      throw new AppError(
        'INVALID_REQUEST',
        `exclusive.shared_basis.budget ${budget} allows ${(total / 1e6).toFixed(3)} MB (of ${(this.expertsBytes / 1e6).toFixed(3)} MB of experts), but the exact vector deltas alone take ${(this.vectorBytes / 1e6).toFixed(3)} MB; raise the budget or exclude vectors (e.g. exclude: ['*.bias'])`,
      )
    const { ranks } = allocateBasisRanks(
      this.pendingBases.map((p) => ({
        kept: keptEnergy(p.basis, this.T),
        bytes: (k: number) =>
          basisBytes(
            p.rows,
            p.cols,
            this.T,
            Math.min(k, p.basis.rankIn),
            this.spec.dtype,
            Math.min(k, p.basis.rankOut),
          ),
      })),
      left,
    )
    this.pendingBases.forEach((p, i) => {
      const k = ranks[i] ?? 0
      const cut = truncateBasis(p.basis, p.rows, p.cols, this.T, k, k)
      this.storeBasis({ ...p, basis: cut })
    })
    this.pendingBases.length = 0
  }

  private async addPending(
    name: string,
    rows: number,
    cols: number,
    deltas: readonly Float32Array[],
    budget: number,
  ): Promise<void> {
    const perRank = bytesPerRank(rows, cols, this.spec.dtype)
    const evenShare = (budget * rows * cols * 4) / perRank
    const cap = Math.max(1, Math.min(rows, cols, Math.ceil(BUDGET_CAP_OVER_EVEN_SHARE * evenShare)))
    const parts: CompressedDelta[] = []
    const energy: number[] = []
    for (const delta of deltas) {
      parts.push(await compressDelta(delta, rows, cols, { rank: cap }))
      let e = 0
      for (let i = 0; i < delta.length; i++) e += (delta[i] as number) ** 2
      energy.push(e)
    }
    const row: ExclusiveRow = { name, kind: 'matrix', shape: [rows, cols], relError: [] }
    this.knowledge.rows.push(row)
    this.pending.push({ name, rows, cols, parts, energy, row })
  }

  /**
   * Under a budget: spends `budget` × the experts' bytes, less the exact vector deltas, on the matrices' ranks
   * (allocateRanks: greedy on σ² per byte over every matrix and expert), then stacks each matrix's factors.
   * Raw σ², not normalised per expert or per matrix: it minimises the total squared error of the deltas, and on
   * the Fashion zoo's validation split it was best at budget 0.1 (per-expert normalised: −0.3 points, per-matrix:
   * −1.6). Energy is not output sensitivity: at 0.05 it leaves the 10-class head at rank 3–4 and lands below a
   * uniform rank 16 of the same bytes (bench:quality's frontier table).
   * Without a budget there is nothing left to do.
   * @throws AppError INVALID_REQUEST when the vector deltas alone exceed the budget
   */
  finish(): ExclusiveKnowledge {
    const basisBudget = this.spec.shared_basis?.budget
    if (basisBudget !== undefined && this.pendingBases.length > 0) this.finishBases(basisBudget)
    const budget = this.spec.budget
    if (budget === undefined || this.pending.length === 0) return this.knowledge
    const total = budget * this.expertsBytes
    const left = total - this.vectorBytes
    if (left < 0)
      throw new AppError(
        'INVALID_REQUEST',
        `exclusive.budget ${budget} allows ${(total / 1e6).toFixed(3)} MB (of ${(this.expertsBytes / 1e6).toFixed(3)} MB of experts), but the exact vector deltas alone take ${(this.vectorBytes / 1e6).toFixed(3)} MB; raise the budget or exclude vectors (e.g. exclude: ['*.bias'])`,
      )
    const candidates = this.pending.flatMap((m) =>
      m.parts.map((p) => ({
        sigma: p.sigma,
        bytesPerRank: bytesPerRank(m.rows, m.cols, this.spec.dtype),
      })),
    )
    const { ranks } = allocateRanks(candidates, left)
    let i = 0
    const stacked: MatrixFactors[] = []
    for (const m of this.pending) {
      const parts = m.parts.map((p, t) =>
        cutTo(p, m.rows, m.cols, ranks[i++] ?? 0, m.energy[t] ?? 0),
      )
      m.row.ranks = parts.map((p) => p.rank)
      m.row.relError = parts.map((p) => p.relError)
      const s = stackExperts(m.name, m.rows, m.cols, parts)
      if (s) stacked.push(s)
    }
    this.knowledge.matrices.push(...stacked)
    this.pending.length = 0
    return this.knowledge
  }
}
