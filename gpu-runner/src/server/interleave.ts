/**
 * Several async sources as one, each value passed on as it comes: the choices of a request with `n` > 1 stream
 * their chunks into one server-sent event stream, in the order their tokens are sampled.
 * @module
 */

/**
 * Interleaves `sources`. A source that ends with `false` (it yielded an error) ends the whole: the others are
 * returned (for a generation, that cancels its sequence) and the result is `false`. Returning the interleaved
 * iterator (the client went away) returns every source still open.
 */
export async function* interleave<T>(
  sources: readonly AsyncGenerator<T, boolean>[],
): AsyncGenerator<T, boolean> {
  const pending = new Map<number, Promise<{ i: number; r: IteratorResult<T, boolean> }>>()
  const pull = (i: number) => {
    const source = sources[i] as AsyncGenerator<T, boolean>
    pending.set(
      i,
      source.next().then((r) => ({ i, r })),
    )
  }
  sources.forEach((_, i) => {
    pull(i)
  })
  let ok = true
  try {
    while (pending.size > 0) {
      const { i, r } = await Promise.race(pending.values())
      if (r.done) {
        pending.delete(i)
        if (!r.value) {
          ok = false
          break
        }
        continue
      }
      yield r.value
      pull(i)
    }
  } finally {
    const open = [...pending.keys()]
    pending.clear()
    await Promise.all(open.map((i) => sources[i]?.return(true)))
  }
  return ok
}
