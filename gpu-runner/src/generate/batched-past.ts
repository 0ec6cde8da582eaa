/**
 * The batched past of the engine's decode passes ([B, H, P, hd] per layer and kind, rows left-padded), kept in two
 * sets of buffers that take turns: a pass reads its past from one set while the next past (one position longer,
 * the pass's new keys and values appended to each row) is written into the other. The buffers only grow (with
 * slack, so not on every step), so a decode step allocates nothing: fresh memory per step, which onnxruntime-node
 * hands out for every fetched output, costs page faults, zero-filling and collections (new-kv-outputs.ts).
 *
 * A pass's arrays are views of the front part of a buffer; an in-process session reads them where they are, a
 * threaded one copies them on the way to its thread. Released when the engine has no sequence left.
 * @module
 */
import type { DecoderLayout } from './decoder-graph.ts'

/** Room for this many more positions is left when a buffer grows (a buffer then serves that many steps). */
const SLACK_POSITIONS = 32

export class BatchedPast {
  private readonly sets: [Float32Array[], Float32Array[]] = [[], []]
  private side = 0

  constructor(private readonly layout: DecoderLayout) {}

  /** Bytes the buffers hold. */
  get bytes(): number {
    return this.sets.flat().reduce((n, a) => n + a.byteLength, 0)
  }

  /** Drops the buffers (the engine is idle). */
  release(): void {
    this.sets[0] = []
    this.sets[1] = []
  }

  /**
   * 2·layers zeroed arrays [B, H, P, hd] in the set not holding the current past, for a past rebuilt from the
   * sequences' caches (padding must be finite: it is masked, but 0 · NaN would not be).
   */
  fresh(B: number, P: number): Float32Array[] {
    const views = this.take(B, P)
    for (const v of views) v.fill(0)
    return views
  }

  /**
   * The next past: `past` ([B, H, P, hd] each) with one position appended to every row from `added` ([B, H, 1,
   * hd] each, a pass's new keys and values), as [B, H, P + 1, hd] views in the other set.
   */
  grow(past: readonly Float32Array[], added: readonly Float32Array[], B: number, P: number) {
    const { heads: H, headDim: hd } = this.layout
    const next = this.take(B, P + 1)
    next.forEach((dst, i) => {
      const src = past[i] as Float32Array
      const add = added[i] as Float32Array
      for (let r = 0; r < B * H; r++) {
        const at = r * (P + 1) * hd
        if (P > 0) dst.set(src.subarray(r * P * hd, (r + 1) * P * hd), at)
        dst.set(add.subarray(r * hd, (r + 1) * hd), at + P * hd)
      }
    })
    return next
  }

  private take(B: number, P: number): Float32Array[] {
    const { layers, heads, headDim } = this.layout
    this.side ^= 1
    const set = this.sets[this.side] as Float32Array[]
    const need = B * heads * P * headDim
    for (let i = 0; i < 2 * layers; i++)
      if ((set[i]?.length ?? -1) < need)
        set[i] = new Float32Array(B * heads * (P + SLACK_POSITIONS) * headDim)
    return set.map((a) => a.subarray(0, need))
  }
}
