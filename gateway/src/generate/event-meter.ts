/**
 * A generation's server-sent events on their way from the runner to the client: passed on event by event as
 * they arrive (only a partial event is ever held back), and tallied on the way (the `usage` of the runner's
 * last chunk, and how many events carried text) so that the answer's tokens can be charged when the stream
 * ends, and the completion's `id` for its experiment exposure. Cancelling the metered stream (the client went
 * away) cancels the runner's stream.
 * @module
 */
import { type Usage, UsageSchema } from '@twinserve/shared'

export interface StreamTally {
  /** The `usage` the runner sent (in a last chunk, when the request asked for it). */
  usage: Usage | undefined
  /** Events whose choice carried text (one per sampled token that produced text). */
  pieces: number
  /** Whether the stream ran to its end (false: cancelled or broken). */
  complete: boolean
  /** The `id` of the first event that had one (a completion's `cmpl-…`). */
  id: string | undefined
}

export interface MeterOptions {
  /**
   * Leave out the usage-only chunk (`choices: []` with `usage`): the gateway asked the runner for it to count
   * tokens, the client did not.
   */
  dropUsageOnly: boolean
  /**
   * Rewrites the first event that carries `choices` (its JSON object, changed in place), e.g. to name an A/B
   * arm in it; the event is then sent re-serialised as one `data:` line (the runner's events have no other
   * fields).
   */
  stampFirst?: ((json: Record<string, unknown>) => void) | undefined
  /** Called once, when the stream ends, breaks or is cancelled. */
  onEnd(tally: StreamTally): void
}

interface EventView {
  usage?: Usage
  text: boolean
  usageOnly: boolean
  id?: string
  /** The parsed payload, when it is an object with `choices`. */
  chunk?: Record<string, unknown>
}

/** What one event says: its `data:` payload's usage and whether it carries text. */
function view(event: string): EventView {
  const data = event
    .split(/\r?\n/)
    .filter((l) => l.startsWith('data:'))
    .map((l) => l.slice(5).trimStart())
    .join('\n')
  if (data === '' || data === '[DONE]') return { text: false, usageOnly: false }
  let json: unknown
  try {
    json = JSON.parse(data)
  } catch {
    return { text: false, usageOnly: false }
  }
  if (!json || typeof json !== 'object') return { text: false, usageOnly: false }
  const o = json as {
    usage?: unknown
    choices?: Array<{ text?: unknown; delta?: { content?: unknown } }>
    text_output?: unknown
  }
  const usage = UsageSchema.safeParse(o.usage)
  const choice = Array.isArray(o.choices) ? o.choices[0] : undefined
  const piece = choice?.text ?? choice?.delta?.content ?? o.text_output
  const id = (o as { id?: unknown }).id
  return {
    ...(usage.success ? { usage: usage.data } : {}),
    ...(typeof id === 'string' ? { id } : {}),
    ...(Array.isArray(o.choices) ? { chunk: o as Record<string, unknown> } : {}),
    text: typeof piece === 'string' && piece.length > 0,
    usageOnly: usage.success && Array.isArray(o.choices) && o.choices.length === 0,
  }
}

export function meterEvents(
  source: ReadableStream<Uint8Array>,
  options: MeterOptions,
): ReadableStream<Uint8Array> {
  const reader = source.getReader()
  const decoder = new TextDecoder()
  const encoder = new TextEncoder()
  const tally: StreamTally = { usage: undefined, pieces: 0, complete: false, id: undefined }
  let stamp = options.stampFirst
  let ended = false
  let pending = ''
  const end = (complete: boolean) => {
    if (ended) return
    ended = true
    tally.complete = complete
    options.onEnd(tally)
  }
  /** The complete events in `pending` (each with its blank line), as they should reach the client. */
  const takeEvents = (): string => {
    let out = ''
    for (;;) {
      const m = /\r?\n\r?\n/.exec(pending)
      if (!m) return out
      const event = pending.slice(0, m.index)
      const whole = pending.slice(0, m.index + m[0].length)
      pending = pending.slice(m.index + m[0].length)
      const v = view(event)
      if (v.usage) tally.usage = v.usage
      if (v.text) tally.pieces += 1
      tally.id ??= v.id
      if (v.usageOnly && options.dropUsageOnly) continue
      if (stamp && v.chunk) {
        stamp(v.chunk)
        stamp = undefined
        out += `data: ${JSON.stringify(v.chunk)}\n\n`
      } else out += whole
    }
  }
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          for (;;) {
            const next = await reader.read()
            if (next.done) {
              pending += decoder.decode()
              const rest = takeEvents() + pending
              if (rest) controller.enqueue(encoder.encode(rest))
              controller.close()
              end(true)
              return
            }
            pending += decoder.decode(next.value, { stream: true })
            const out = takeEvents()
            if (out) {
              controller.enqueue(encoder.encode(out))
              return
            }
          }
        } catch (err) {
          end(false)
          controller.error(err)
        }
      },
      async cancel(reason) {
        end(false)
        await reader.cancel(reason).catch(() => undefined)
      },
    },
    { highWaterMark: 0 },
  )
}
