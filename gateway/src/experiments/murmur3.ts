/**
 * MurmurHash3 x86 32-bit over the UTF-8 bytes of a string: the stable, well-spread, non-cryptographic hash that
 * Optimizely and most experiment platforms bucket units with. Assignment must not change across releases or
 * runtimes, so this is written out here (and pinned by published test vectors) rather than borrowed.
 * @see https://github.com/aappleby/smhasher/blob/master/src/MurmurHash3.cpp
 * @module
 */

const encoder = new TextEncoder()

/** The unsigned 32-bit MurmurHash3 (x86_32) of `text` (UTF-8) with `seed`. */
export function murmur3(text: string, seed = 0): number {
  const bytes = encoder.encode(text)
  const len = bytes.length
  const c1 = 0xcc9e2d51
  const c2 = 0x1b873593
  let h = seed >>> 0
  const blocks = len & ~3
  for (let i = 0; i < blocks; i += 4) {
    let k =
      (bytes[i] as number) |
      ((bytes[i + 1] as number) << 8) |
      ((bytes[i + 2] as number) << 16) |
      ((bytes[i + 3] as number) << 24)
    k = Math.imul(k, c1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, c2)
    h ^= k
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  // The 1-3 tail bytes, little-endian, folded in like a short block.
  const tail = len & 3
  if (tail > 0) {
    let k = 0
    for (let j = tail - 1; j >= 0; j--) k = (k << 8) | (bytes[blocks + j] as number)
    k = Math.imul(k, c1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, c2)
    h ^= k
  }
  h ^= len
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}
