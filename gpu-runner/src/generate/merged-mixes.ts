/**
 * The merged decoder (merged-decode-graph.ts) as the engine drives it: its two sessions, the merged matrices of
 * the last few mixes, so that a mix many sequences share (a tenant's pinned mix, a one-hot expert) is merged once,
 * and a session with the hottest mix baked in (baked-mix-graph.ts).
 *
 * When a decode pass's rows all apply one mix, the engine runs the merged decode session with that mix's matrices
 * as extra feeds (`get`, or `merge` for a mix not kept); a prompt whose explicit mix is kept is prefilled there
 * too. A mix not yet merged is merged only when the batch has enough steps left to repay the merge
 * (`worthMerging`): on zoo/lm a merge costs ~4 ms, and a merged pass at batch 1 saved 0.8–1.2 ms over the factored
 * one on the 2-core machine of 2026-12-06 (`npm run bench:merged-decode`), so 16 steps repay it with room on a
 * machine where a pass is several times cheaper.
 *
 * A mix that dominates the recent merged passes (a tenant's pinned mix) is baked: a session of its own opens in the
 * background with the mix's matrices and the mix as constants, which onnxruntime prepacks and folds (a pass then
 * costs about what the plain shared model's does, where fed matrices cost 1.4–1.75× it on zoo/lm). Each baked
 * session holds one more copy of the model and costs ~0.1 s to open in a thread of its own (`npm run
 * bench:load-memory`), so at most `maxBaked` are open, and only a mix that ran at least 1 / (maxBaked + 1) of the
 * last `bakeWindow` merged passes is baked: a mix that many sequences share now, not one of many that come and go
 * (a first version baked any mix after 64 passes, and with routed traffic beside a pinned tenant it reopened
 * sessions for mixes that then ran 5 % of the passes: the routed cells of `npm run bench:merged-decode` got 11–13 %
 * slower). A baked mix that no longer dominates gives its session up to one that does; a baked mix is the last to be
 * dropped from the kept ones, and closes its session when it is. The engine runs a new baked session's first pass
 * beside the merged one and keeps it only if they agree (`verified`).
 * @module
 */
import { ort } from '../runtime/ort-session.ts'
import type { RunnableSession } from '../runtime/threaded-session.ts'
import { MERGE_MIX, type MergedMatrix } from './merged-decode-graph.ts'

/** A session with one mix baked in, and how to close it (its owner counts what it holds). */
export interface BakedSession {
  session: RunnableSession
  release(): Promise<void>
}

export interface MergedDecoder {
  /** The merged decode graph's session: the decoder's feeds plus each merged matrix. */
  decode: RunnableSession
  /** The merge graph's session: `mix_weights` [1, T] → each merged matrix. */
  merge: RunnableSession
  matrices: readonly MergedMatrix[]
  /** Opens a session with `mix` [T] and its merged matrices baked in (baked-mix-graph.ts); absent: no baking. */
  bake?: (mix: Float32Array, matrices: Record<string, Float32Array>) => Promise<BakedSession>
}

/** Mixes whose merged matrices the engine keeps by default (the load's memory estimate counts them). */
export const MERGED_MIXES_KEPT = 4

/** Sessions with a mix baked in that the engine keeps open by default (the load's memory estimate counts them). */
export const BAKED_MIXES = 1

/** The recent merged passes whose share of one mix decides its baking, by default (a share of 1/2: 64 passes). */
export const BAKE_WINDOW_PASSES = 128

export interface MergedMixesOptions {
  /** Mixes whose merged matrices are kept (least recently used out first); default MERGED_MIXES_KEPT. */
  maxMixes?: number
  /**
   * Merge a mix not kept only when the batch has at least this many decode steps left (the most any row may still
   * take); default 16.
   */
  minSteps?: number
  /** Sessions with a mix baked in kept open at once; default BAKED_MIXES, 0 bakes none. */
  maxBaked?: number
  /**
   * A mix is baked once it ran at least 1 / (maxBaked + 1) of the last this many merged passes; default
   * BAKE_WINDOW_PASSES.
   */
  bakeWindow?: number
}

/** A kept mix, as a decode pass runs it. */
export interface MergedMix {
  /** Its merged matrices, fed to the merged decode session. */
  matrices: Record<string, ort.Tensor>
  /** The session with this mix baked in, once it is open and its first pass agreed with the merged one. */
  baked?: RunnableSession
  /** A session with this mix baked in, open but not yet checked: the engine runs the next pass on both. */
  candidate?: RunnableSession
}

interface Kept extends MergedMix {
  mix: Float32Array
  /** Its passes among the last `bakeWindow` merged passes. */
  recent: number
  bakedSession?: BakedSession
  baking?: boolean
  dropped?: boolean
}

export class MergedMixes {
  private readonly kept = new Map<string, Kept>()
  readonly maxMixes: number
  readonly minSteps: number
  readonly maxBaked: number
  readonly bakeWindow: number
  /** Set when a bake failed or disagreed: no more baking (the merged decode graph serves the same). */
  private bakingOff = false
  /** The mixes of the last `bakeWindow` merged passes, a ring. */
  private readonly window: (Kept | undefined)[]
  private windowAt = 0
  readonly counters = {
    /** Sessions with a mix baked in, opened. */
    bakes: 0,
    /** Bakes that failed to open or whose first pass disagreed with the merged one. */
    bakeFailures: 0,
  }

  constructor(
    readonly decoder: MergedDecoder,
    readonly experts: number,
    options: MergedMixesOptions = {},
  ) {
    this.maxMixes = Math.max(1, options.maxMixes ?? MERGED_MIXES_KEPT)
    this.minSteps = options.minSteps ?? 16
    this.maxBaked = decoder.bake ? Math.max(0, options.maxBaked ?? BAKED_MIXES) : 0
    this.bakeWindow = Math.max(1, options.bakeWindow ?? BAKE_WINDOW_PASSES)
    this.window = new Array(this.bakeWindow)
  }

  /** The kept mix `mix`, marked most recently used; undefined if it is not kept. */
  get(mix: ArrayLike<number>): MergedMix | undefined {
    const key = keyOf(mix)
    const hit = this.kept.get(key)
    if (hit) {
      this.kept.delete(key)
      this.kept.set(key, hit)
    }
    return hit
  }

  /** Whether a batch with `stepsLeft` decode steps left should merge a mix it does not have. */
  worthMerging(stepsLeft: number): boolean {
    return stepsLeft >= this.minSteps
  }

  /** Merges `mix` in the merge session and keeps its matrices (dropping the least recently used past maxMixes). */
  async merge(mix: ArrayLike<number>): Promise<MergedMix> {
    const w = Float32Array.from({ length: this.experts }, (_, t) => mix[t] ?? 0)
    const out = await this.decoder.merge.run(
      { [MERGE_MIX]: new ort.Tensor('float32', w, [1, this.experts]) },
      this.decoder.matrices.map((m) => m.name),
    )
    const merged: Record<string, ort.Tensor> = {}
    for (const m of this.decoder.matrices) {
      const t = out[m.name]
      if (t?.type !== 'float32') throw new Error(`the merge graph returned no float32 ${m.name}`)
      merged[m.name] = t
    }
    // A decode session in a thread of its own keeps its copy there: no 3 MiB copy per pass (threaded-session.ts).
    const decode = this.decoder.decode
    const entry: Kept = {
      mix: w,
      matrices: decode.keep ? decode.keep(merged) : merged,
      recent: 0,
    }
    this.kept.set(keyOf(w), entry)
    while (this.kept.size > this.maxMixes) {
      // The least recently used mix goes, but not a baked one while another can: a baked mix is a hot one, and a run
      // of one-off mixes (sequences alone, each its own mix) would otherwise close its session and start over.
      const [key, dropped] =
        [...this.kept].find(([, k]) => k !== entry && !k.bakedSession && !k.baking) ??
        (this.kept.entries().next().value as [string, Kept])
      this.kept.delete(key)
      this.drop(dropped)
    }
    return entry
  }

  /**
   * Counts a merged pass of `m` (a mix `get` or `merge` gave), and starts baking it in the background when it
   * dominates the recent passes and a baked session is free or held by a mix that no longer does: the pass after it
   * opens runs on both (`candidate`).
   */
  ran(m: MergedMix): void {
    const e = m as Kept
    const out = this.window[this.windowAt]
    if (out) out.recent--
    this.window[this.windowAt] = e
    this.windowAt = (this.windowAt + 1) % this.bakeWindow
    e.recent++
    const bake = this.decoder.bake
    const hot = (k: Kept) => k.recent * (this.maxBaked + 1) >= this.bakeWindow
    if (!bake || this.bakingOff || e.baking || e.bakedSession || !hot(e)) return
    const holding = [...this.kept.values()].filter((k) => k.bakedSession || k.baking)
    if (holding.length >= this.maxBaked) {
      const cold = holding.find((k) => k.bakedSession && !hot(k))
      if (!cold) return
      this.closeBaked(cold)
    }
    e.baking = true
    const values: Record<string, Float32Array> = {}
    for (const [name, t] of Object.entries(e.matrices)) values[name] = t.data as Float32Array
    bake(e.mix, values).then(
      (s) => {
        e.baking = false
        this.counters.bakes++
        if (e.dropped || this.bakingOff) s.release().catch(() => {})
        else {
          e.bakedSession = s
          e.candidate = s.session
        }
      },
      () => {
        e.baking = false
        this.counters.bakeFailures++
        this.bakingOff = true
      },
    )
  }

  /**
   * The engine's check of a candidate's first pass: agreed, its passes run baked from now on; not, it is closed
   * and nothing more is baked.
   */
  verified(m: MergedMix, agreed: boolean): void {
    const e = m as Kept
    if (!e.candidate) return
    if (agreed) e.baked = e.candidate
    else {
      this.counters.bakeFailures++
      this.bakingOff = true
      this.closeBaked(e)
    }
    e.candidate = undefined
  }

  /** A baked session failed a run: it is closed and nothing more is baked (the mix runs merged, fed). */
  failed(m: MergedMix): void {
    this.counters.bakeFailures++
    this.bakingOff = true
    this.closeBaked(m as Kept)
  }

  /** Forgets every kept mix and closes every baked session (the engine is done with the model). */
  close(): void {
    for (const e of this.kept.values()) this.drop(e)
    this.kept.clear()
  }

  private drop(e: Kept): void {
    e.dropped = true
    this.decoder.decode.forget?.(e.matrices)
    this.closeBaked(e)
  }

  private closeBaked(e: Kept): void {
    const s = e.bakedSession
    e.bakedSession = undefined
    e.baked = undefined
    e.candidate = undefined
    // No pass is in flight here: the engine runs one pass at a time and drops or checks mixes between passes.
    s?.release().catch(() => {})
  }
}

/** A mix's key: its weights as float32, exactly (a mix is held bit for bit from prefill to the last step). */
function keyOf(mix: ArrayLike<number>): string {
  return Array.from(Float32Array.from(mix)).join(',')
}
