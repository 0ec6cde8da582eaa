/**
 * A sequence's generated text, released piece by piece as tokens arrive: the whole continuation is decoded again
 * each time (byte-level BPE decodes prefixes to prefixes), and two kinds of tail are held back until the next
 * token settles them: an incomplete UTF-8 character (decoded as U+FFFD) and the start of a stop string. A stop
 * string ends the text before it; it is never sent, not even in part.
 * @module
 */

export interface Detokenizer {
  /** Text of generated ids (special tokens skipped). */
  decode(ids: readonly number[]): string
}

export interface TextPiece {
  /** New text to send (may be empty). */
  delta: string
  /** A stop string was found: the text ends before it and generation should stop. */
  stopped: boolean
}

/** Length of the longest suffix of `text` that is a proper prefix of one of `stops`. */
function heldForStop(text: string, stops: readonly string[]): number {
  let held = 0
  for (const s of stops)
    for (let k = Math.min(s.length - 1, text.length); k > held; k--)
      if (text.endsWith(s.slice(0, k))) {
        held = k
        break
      }
  return held
}

export class TextStream {
  private readonly ids: number[] = []
  /** Text already released. */
  private sent = ''

  constructor(
    private readonly detokenizer: Detokenizer,
    private readonly stops: readonly string[],
  ) {}

  get text(): string {
    return this.sent
  }

  push(id: number): TextPiece {
    this.ids.push(id)
    const full = this.detokenizer.decode(this.ids)
    let end = full.length
    while (end > 0 && full.charCodeAt(end - 1) === 0xfffd) end--
    const stable = full.slice(0, end)
    let cut = -1
    for (const s of this.stops) {
      // A stop string cannot start before what was released minus its length (it would have been held back).
      const at = stable.indexOf(s, Math.max(0, this.sent.length - s.length))
      if (at >= 0 && (cut < 0 || at < cut)) cut = at
    }
    if (cut >= 0) return { delta: this.release(stable.slice(0, cut)), stopped: true }
    return {
      delta: this.release(stable.slice(0, stable.length - heldForStop(stable, this.stops))),
      stopped: false,
    }
  }

  /** At the end: everything decoded, held tails included (a stop prefix that never completed is text). */
  finish(): string {
    const full = this.detokenizer.decode(this.ids)
    return this.release(full)
  }

  private release(upTo: string): string {
    if (!upTo.startsWith(this.sent) || upTo.length <= this.sent.length) return ''
    const delta = upTo.slice(this.sent.length)
    this.sent = upTo
    return delta
  }
}
