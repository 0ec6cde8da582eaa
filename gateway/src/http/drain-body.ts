/**
 * Reads a small request body to its end before an early error answer (401, 429, 404 … sent before the handler
 * read the body). workerd cannot reuse a connection whose request body is left unread: it closes it, and a
 * keep-alive client that has already written its next request on that connection sees `other side closed` or
 * ECONNRESET instead of the 429 it was owed. `npm run chaos -- --gateway workerd --only overload` lost about one
 * request in seven that way (48 clients, a key at 20 req/s: most answers are 429s).
 * Only bodies that announce a small length are drained, and only for a short while: a large or trickled body
 * still gets its answer at once, on a connection that then closes.
 * @module
 */

/** Bodies up to this many bytes (by Content-Length) are drained. */
export const DRAIN_LIMIT_BYTES = 64 * 1024
/** The longest an error answer waits for the rest of a body. */
export const DRAIN_WAIT_MS = 1000

export async function drainSmallBody(req: Request): Promise<void> {
  if (req.body === null || req.bodyUsed) return
  const length = Number(req.headers.get('content-length'))
  if (!Number.isFinite(length) || length <= 0 || length > DRAIN_LIMIT_BYTES) return
  let timer: ReturnType<typeof setTimeout> | null = null
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, DRAIN_WAIT_MS)
  })
  try {
    await Promise.race([req.arrayBuffer().then(() => undefined), late])
  } catch {
    // A body the client broke off: nothing to keep the connection for.
  } finally {
    if (timer !== null) clearTimeout(timer)
  }
}
