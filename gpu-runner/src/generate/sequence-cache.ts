/**
 * One sequence's keys and values, kept between steps in its own buffers ([heads, capacity, head_dim] per layer
 * and kind), sized at admission for its prompt plus max_tokens so that it never grows mid-generation. When the
 * running rows change (a sequence joins or leaves), the engine gathers every row's cache right-aligned into one
 * left-padded past (the zoo's decoder reproduces an unpadded sequence from a left-padded one: mask 0 on the
 * padding); between such changes it feeds each pass's `present` back as it is. Either way each row keeps its new
 * position from `present` here, so the next gather finds it whole.
 * @module
 */
import type { DecoderLayout } from './decoder-graph.ts'

export class SequenceCache {
  /** Cached positions. */
  length = 0
  private readonly kv: Float32Array[]

  constructor(
    private readonly layout: DecoderLayout,
    readonly capacity: number,
  ) {
    const { layers, heads, headDim } = layout
    this.kv = Array.from({ length: 2 * layers }, () => new Float32Array(heads * capacity * headDim))
  }

  /** Bytes held (the whole capacity: reserved at admission). */
  get bytes(): number {
    return this.kv.reduce((n, a) => n + a.byteLength, 0)
  }

  /**
   * Writes `count` positions of row `b` of a step's `present` ([B, H, total, hd] each), starting at its index
   * `from`, after what is cached.
   */
  append(
    present: readonly Float32Array[],
    b: number,
    total: number,
    from: number,
    count: number,
  ): void {
    const { heads, headDim: hd } = this.layout
    if (this.length + count > this.capacity)
      throw new Error(`sequence cache overflow: ${this.length} + ${count} > ${this.capacity}`)
    present.forEach((src, i) => {
      const dst = this.kv[i] as Float32Array
      for (let h = 0; h < heads; h++) {
        const at = ((b * heads + h) * total + from) * hd
        dst.set(src.subarray(at, at + count * hd), (h * this.capacity + this.length) * hd)
      }
    })
    this.length += count
  }

  /** Copies this cache into row `b` of a batched past ([B, H, past, hd] each), right-aligned. */
  gather(into: readonly Float32Array[], b: number, past: number): void {
    const { heads, headDim: hd } = this.layout
    const pad = past - this.length
    this.kv.forEach((src, i) => {
      const dst = into[i] as Float32Array
      for (let h = 0; h < heads; h++) {
        const at = h * this.capacity * hd
        dst.set(src.subarray(at, at + this.length * hd), ((b * heads + h) * past + pad) * hd)
      }
    })
  }
}
