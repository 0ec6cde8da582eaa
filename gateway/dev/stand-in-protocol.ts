/**
 * The control surface of the runner stand-in (dev/runner-stand-in.ts), shared with the workerd tests that drive
 * it through the globalSetup's control API. Types only: no Node imports, so workerd code may use it.
 * @module
 */
/** How a stand-in answers model calls. */
export type StandInBehavior =
  | { mode: 'ok' }
  /** Answers every model call with this status and an error body. */
  | { mode: 'fail'; status: number }
  /** Destroys the connection without answering (a crashed process). */
  | { mode: 'reset' }
  /** Answers correctly after a delay. */
  | { mode: 'delay'; ms: number }
  /** Answers 200 with a body that is not the protocol. */
  | { mode: 'garbage' }
  /** Generates as in 'ok', but waits this long before each streamed token (cancel tests). */
  | { mode: 'slow_tokens'; ms: number }

export interface StandInStats {
  id: string
  url: string
  infer: number
  metadata: number
  bad_signatures: number
  /** Headers of the last model call, lower-cased. */
  last_headers: Record<string, string>
  max_in_flight: number
  /** Generation calls (/v1 completions and chat, /v2 generate[_stream]). */
  generate: number
  /** Streams whose client went away before the last token. */
  streams_cancelled: number
  /** The body of the last generation call, as received. */
  last_generate_body: string
  /** The path of the last model call (a rollout routes to `/v2/models/{m}/versions/{v}/infer`). */
  last_path: string
}
