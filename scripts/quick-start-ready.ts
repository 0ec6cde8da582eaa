/**
 * The machine-readable line `npm start` prints once it serves: `twinserve-ready {json}`, so tests and tools use
 * the same URLs, key and request as the curl printed for people.
 * @module
 */
import { z } from 'zod'

export const READY_PREFIX = 'twinserve-ready '

export const QuickStartReadySchema = z.object({
  gateway_url: z.string(),
  runner_url: z.string(),
  /** The demo package's model name. */
  model: z.string(),
  /** The dev API key (scopes infer + admin, all models). */
  key: z.string(),
  /** Absolute path of the example request (docs/examples/ankle-boot.json). */
  request_file: z.string(),
  /** The printed curl, exactly; its request-file path is relative to where `npm start` was typed. */
  curl: z.string(),
  /** The text twin package's model name (zoo/text/package), served beside the demo. */
  text_model: z.string(),
  /** The printed curl that sends it a sentence (V2 BYTES input `text`), exactly. */
  text_curl: z.string(),
  /** The LM twin package's model name (zoo/lm/package), generating text through the OpenAI routes. */
  lm_model: z.string(),
  /** The printed curl that streams a chat completion from it (`stream: true`), exactly. */
  chat_curl: z.string(),
  state_dir: z.string(),
})
export type QuickStartReady = z.infer<typeof QuickStartReadySchema>
