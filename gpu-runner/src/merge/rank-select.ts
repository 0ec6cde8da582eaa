/**
 * Selection by magnitude rank without sorting: which entries of a tensor have an ascending |x| rank inside
 * [lo, hi). Ranks are stable (equal magnitudes ordered by index), so results are deterministic where torch's
 * argsort is not. O(n) radix selection on the IEEE-754 bits: for non-negative floats the bit pattern orders
 * like the value, so |x| is `bits & 0x7fffffff` as an unsigned integer.
 * @module
 */

/** Radix digits over the 31 magnitude bits: [30..21], [20..10], [9..0]. */
const DIGITS: readonly { shift: number; bits: number }[] = [
  { shift: 21, bits: 10 },
  { shift: 10, bits: 11 },
  { shift: 0, bits: 10 },
]

function magnitudeKeys(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length)
}

/**
 * The histogram bucket that holds ascending rank `rank`, the rank inside that bucket, and how many entries the
 * buckets below it hold.
 */
function bucketOfRank(
  hist: Uint32Array,
  rank: number,
): { bucket: number; rankInBucket: number; below: number } {
  let rest = rank
  let below = 0
  let bucket = 0
  for (; bucket < hist.length; bucket++) {
    const c = hist[bucket] as number
    if (rest < c) break
    rest -= c
    below += c
  }
  return { bucket, rankInBucket: rest, below }
}

/**
 * The magnitude key at ascending rank `r` (0-based) and how many entries have a strictly smaller key.
 * Requires 0 ≤ r < n. Two passes over the data: a histogram of the top digit, then a gather of that digit's
 * bucket; the remaining digits only look at the bucket.
 */
export function keyAtRank(values: Float32Array, r: number): { key: number; less: number } {
  const bits = magnitudeKeys(values)
  const n = bits.length
  const [first, ...rest] = DIGITS as [
    { shift: number; bits: number },
    ...{ shift: number; bits: number }[],
  ]
  const hist = new Uint32Array(1 << first.bits)
  for (let i = 0; i < n; i++) {
    const b = ((bits[i] as number) & 0x7fffffff) >>> first.shift
    hist[b] = (hist[b] as number) + 1
  }
  const top = bucketOfRank(hist, r)
  const d = top.bucket
  let rank = top.rankInBucket
  let less = top.below
  let candidates = new Uint32Array(hist[d] as number)
  let m = 0
  for (let i = 0; i < n; i++) {
    const k = (bits[i] as number) & 0x7fffffff
    if (k >>> first.shift === d) candidates[m++] = k
  }
  let prefix = (d << first.shift) >>> 0
  for (const { shift, bits: width } of rest) {
    const digitMask = (1 << width) - 1
    const h = new Uint32Array(1 << width)
    for (let i = 0; i < candidates.length; i++) {
      const b = ((candidates[i] as number) >>> shift) & digitMask
      h[b] = (h[b] as number) + 1
    }
    const digit = bucketOfRank(h, rank)
    const e = digit.bucket
    rank = digit.rankInBucket
    less += digit.below
    prefix = (prefix | (e << shift)) >>> 0
    const next = new Uint32Array(h[e] as number)
    let t = 0
    for (let i = 0; i < candidates.length; i++) {
      const k = candidates[i] as number
      if (((k >>> shift) & digitMask) === e) next[t++] = k
    }
    candidates = next
  }
  return { key: prefix, less }
}

/**
 * Zeroes, in place, every entry whose stable ascending |x| rank is outside [lo, hi); returns `values`.
 * @example keepRankRange(delta, n - k, n) // keep the k largest magnitudes (TIES trim)
 */
export function keepRankRange(values: Float32Array, lo: number, hi: number): Float32Array {
  const n = values.length
  const from = Math.max(0, Math.min(lo, n))
  const to = Math.max(from, Math.min(hi, n))
  if (from === 0 && to === n) return values
  if (from === to) {
    values.fill(0)
    return values
  }
  const bits = magnitudeKeys(values)
  // Keys at the two boundary ranks; an entry with a boundary key gets its exact stable rank:
  // (#keys smaller) + (#equal keys before it).
  const low = from > 0 ? keyAtRank(values, from) : null
  const high = to < n ? keyAtRank(values, to - 1) : null
  // Keys are < 2^31, so (a − b) >>> 31 is 1 exactly when a < b: a branch-free in/out test for the many
  // entries away from the boundaries (random data makes a branch there mispredict half the time).
  const loKey = low ? low.key : -1
  const hiKey = high ? high.key : 0x80000000
  let seenLo = 0
  let seenHi = 0
  for (let i = 0; i < n; i++) {
    const k = (bits[i] as number) & 0x7fffffff
    // Boundary keys need the entry's exact stable rank; the rest the branch-free test (+ 0 turns the −0
    // of a dropped negative entry into +0).
    if (k === loKey || k === hiKey) {
      const rank = low && k === loKey ? low.less + seenLo++ : (high?.less ?? 0) + seenHi++
      if (rank < from || rank >= to) values[i] = 0
    } else values[i] = (values[i] as number) * (((loKey - k) >>> 31) & ((k - hiKey) >>> 31)) + 0
  }
  return values
}
