/**
 * Server-sent events from an async source of `data:` payloads, pulled as the client reads (no buffering beyond
 * one event). When the client goes away, the stream is cancelled, which returns the source's iterator: for a
 * generation that is what cancels its sequence (the engine frees it at the next step).
 * @module
 */

const encoder = new TextEncoder()

export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  // Proxies (nginx) must not buffer a token stream.
  'x-accel-buffering': 'no',
} as const

export function sseResponse(
  source: AsyncIterable<string>,
  headers: Record<string, string> = {},
): Response {
  const it = source[Symbol.asyncIterator]()
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await it.next()
      if (next.done) controller.close()
      else controller.enqueue(encoder.encode(`data: ${next.value}\n\n`))
    },
    async cancel() {
      await it.return?.()
    },
  })
  return new Response(body, { status: 200, headers: { ...SSE_HEADERS, ...headers } })
}
