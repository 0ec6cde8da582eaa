/**
 * A deadline per awaited step of a test. A step that never settles (a response that never comes, a stream that
 * never yields) would otherwise surface only as vitest's "Test timed out in 60000ms", which names no step; here it
 * fails with the step's name, and its work is aborted (a fetch given the signal closes its connection) so that a
 * hung request does not linger into the next test.
 * @module
 */

/**
 * Runs `work` with a signal that aborts after `ms`; rejects with `<step>: no answer within <ms> ms` if the work
 * has not settled by then.
 */
export async function withinStep<T>(
  step: string,
  ms: number,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const abort = new AbortController()
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new Error(`${step}: no answer within ${ms} ms`)
      abort.abort(err)
      reject(err)
    }, ms)
  })
  try {
    return await Promise.race([work(abort.signal), late])
  } finally {
    clearTimeout(timer)
  }
}
