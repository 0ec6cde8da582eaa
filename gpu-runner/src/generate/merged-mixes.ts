/**
 * The merged decoder (merged-decode-graph.ts) as the engine drives it: its two sessions, and the merged matrices of
 * the last few mixes, so that a mix many sequences share (a tenant's pinned mix, a one-hot expert) is merged once.
 *
 * When a decode pass's rows all apply one mix, the engine runs the merged decode session with that mix's matrices
 * as extra feeds (`get`, or `merge` for a mix not kept). A mix not yet merged is merged only when the batch has enough steps left to repay the
 * merge (`worthMerging`): on zoo/lm a merge costs ~4 ms, and a merged pass at batch 1 saved 0.8–1.2 ms over the
 * factored one on the 2-core machine of 2026-12-06 (`npm run bench:merged-decode`), so 16 steps repay it with room
 * on a machine where a pass is several times cheaper.
 * @module
 */
import { ort } from '../runtime/ort-session.ts'
import type { RunnableSession } from '../runtime/threaded-session.ts'
import { MERGE_MIX, type MergedMatrix } from './merged-decode-graph.ts'

export interface MergedDecoder {
  /** The merged decode graph's session: the decoder's feeds plus each merged matrix. */
  decode: RunnableSession
  /** The merge graph's session: `mix_weights` [1, T] → each merged matrix. */
  merge: RunnableSession
  matrices: readonly MergedMatrix[]
}

/** Mixes whose merged matrices the engine keeps by default (the load's memory estimate counts them). */
export const MERGED_MIXES_KEPT = 4

export interface MergedMixesOptions {
  /** Mixes whose merged matrices are kept (least recently used out first); default MERGED_MIXES_KEPT. */
  maxMixes?: number
  /**
   * Merge a mix not kept only when the batch has at least this many decode steps left (the most any row may still
   * take); default 16.
   */
  minSteps?: number
}

export class MergedMixes {
  private readonly kept = new Map<string, Record<string, ort.Tensor>>()
  readonly maxMixes: number
  readonly minSteps: number

  constructor(
    readonly decoder: MergedDecoder,
    readonly experts: number,
    options: MergedMixesOptions = {},
  ) {
    this.maxMixes = Math.max(1, options.maxMixes ?? MERGED_MIXES_KEPT)
    this.minSteps = options.minSteps ?? 16
  }

  /** The kept matrices of `mix`, marked most recently used; undefined if it is not kept. */
  get(mix: ArrayLike<number>): Record<string, ort.Tensor> | undefined {
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
  async merge(mix: ArrayLike<number>): Promise<Record<string, ort.Tensor>> {
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
    const feeds = decode.keep ? decode.keep(merged) : merged
    this.kept.set(keyOf(w), feeds)
    while (this.kept.size > this.maxMixes) {
      const oldest = this.kept.keys().next().value as string
      const dropped = this.kept.get(oldest)
      this.kept.delete(oldest)
      if (dropped) decode.forget?.(dropped)
    }
    return feeds
  }
}

/** A mix's key: its weights as float32, exactly (a mix is held bit for bit from prefill to the last step). */
function keyOf(mix: ArrayLike<number>): string {
  return Array.from(Float32Array.from(mix)).join(',')
}
