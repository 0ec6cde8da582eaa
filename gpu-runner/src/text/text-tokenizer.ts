/**
 * Raw text → the token tensors a text model reads, one code path for the builder (routing data `{"text": …}`)
 * and the runner (V2 `BYTES` input `text`), so that a package routes on exactly the ids it is served with.
 *
 * The tokenizer is a Hugging Face `tokenizer.json` read by `@huggingface/tokenizers` (we do not write one). The
 * input rule: the tokenizer's ids with its special tokens (e.g. `[CLS] … [SEP]` from a TemplateProcessing
 * post-processor); a text longer than `maxLength` keeps its first pieces and the closing special tokens (what
 * Hugging Face's `truncation=True` does to one sequence), or is refused when truncation is off; every row is
 * right-padded with `padId` to `maxLength`, the attention mask 1 on the real tokens and 0 on the padding.
 * Padding to `maxLength` (not to the batch's longest) gives every text request the same shape, so they batch.
 * @module
 */
import { Tokenizer } from '@huggingface/tokenizers'
import { AppError, type PackageTokenizer } from '@twinserve/shared'

/** The input rule (the package manifest's `tokenizer` without its file names). */
export type TextRule = Pick<
  PackageTokenizer,
  'maxLength' | 'padId' | 'truncation' | 'idsInput' | 'maskInput'
>

/** Token tensors for `rows` texts: int64 [rows, maxLength] each, row-major. */
export interface EncodedTexts {
  rows: number
  seq: number
  ids: BigInt64Array
  mask: BigInt64Array
}

/** A lone UTF-16 surrogate: a JSON string that has no UTF-8 encoding. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

function parseJson(bytes: Uint8Array | string, what: string): object {
  try {
    const text = typeof bytes === 'string' ? bytes : new TextDecoder('utf-8').decode(bytes)
    const value: unknown = JSON.parse(text)
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new Error('not a JSON object')
    return value
  } catch (err) {
    throw new AppError(
      'INVALID_MODEL',
      `${what} is not a tokenizer JSON object: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    )
  }
}

export class TextTokenizer {
  /** Ids the post-processor puts before and after a text's pieces (e.g. [CLS] and [SEP]). */
  private readonly prefix: number[]
  private readonly suffix: number[]
  readonly rule: TextRule

  private constructor(
    private readonly tokenizer: Tokenizer,
    rule: TextRule,
    /** For messages: where the tokenizer came from. */
    private readonly label: string,
  ) {
    const { maxLength, padId, truncation, idsInput, maskInput } = rule
    this.rule = { maxLength, padId, truncation, idsInput, maskInput }
    // The special tokens around one sequence, found once on a probe text: its ids with and without them.
    const probe = 'a b'
    const full = tokenizer.encode(probe).ids
    const bare = tokenizer.encode(probe, { add_special_tokens: false }).ids
    const at = bare.length === 0 ? -1 : indexOfRun(full, bare)
    this.prefix = at < 0 ? [] : full.slice(0, at)
    this.suffix = at < 0 ? [] : full.slice(at + bare.length)
    if (this.prefix.length + this.suffix.length >= rule.maxLength)
      throw new AppError(
        'INVALID_MODEL',
        `${label}: max_length ${rule.maxLength} leaves no room for text between the tokenizer's ${this.prefix.length + this.suffix.length} special tokens`,
      )
  }

  /**
   * @param json      the bytes (or text) of `tokenizer.json`
   * @param config    the bytes of `tokenizer_config.json`, if any
   * @param label     where they came from, for error messages
   * @throws AppError INVALID_MODEL when the files are not a tokenizer the library reads
   */
  static fromJson(
    json: Uint8Array | string,
    config: Uint8Array | string | undefined,
    rule: TextRule,
    label: string,
  ): TextTokenizer {
    const tokenizerJson = parseJson(json, `${label}: tokenizer.json`)
    const configJson = config === undefined ? {} : parseJson(config, `${label}: tokenizer config`)
    let tokenizer: Tokenizer
    try {
      tokenizer = new Tokenizer(tokenizerJson, configJson)
    } catch (err) {
      throw new AppError(
        'INVALID_MODEL',
        `${label}: @huggingface/tokenizers cannot read the tokenizer: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      )
    }
    return new TextTokenizer(tokenizer, rule, label)
  }

  /**
   * One text's ids under the input rule, before padding (length ≤ maxLength).
   * @param where names the text in an error (e.g. "input 'text' row 3")
   * @throws AppError INVALID_REQUEST when the text is not valid Unicode, too long and truncation is off, or too
   *   long for the library to tokenize at all
   */
  encode(text: string, where: string): number[] {
    if (LONE_SURROGATE.test(text))
      throw new AppError(
        'INVALID_REQUEST',
        `${where} is not valid UTF-8 text (it has a lone UTF-16 surrogate)`,
      )
    const max = this.rule.maxLength
    // Only the first max_length tokens are ever used, so a long text is tokenized from a head cut at whitespace
    // (pre-tokenizers split there, so the head's pieces are the full text's first pieces): a 1 MB text costs what
    // 2 kB do, and the library is never handed a text that overflows its call stack (a 1 MB word: 10 s, then a
    // RangeError). A head with too few pieces (mostly whitespace, or characters the vocabulary lacks, which fuse
    // into one unknown token) is read again longer, up to a bound past which the text is refused.
    for (const chars of [max * HEAD_CHARS_PER_TOKEN, LONGEST_HEAD_CHARS]) {
      const head = headAtWhitespace(text, chars)
      if (head === undefined) return this.fit(this.ids(text, where), where, false)
      const ids = this.ids(head, where)
      if (ids.length > max) return this.fit(ids, where, true)
      if (chars === LONGEST_HEAD_CHARS)
        throw new AppError(
          'INVALID_REQUEST',
          `${where} has ${text.length} characters whose first ${head.length} make only ${ids.length} tokens (mostly whitespace or characters the tokenizer does not know); send at most ${head.length} characters`,
        )
    }
    return this.fit(this.ids(text, where), where, false)
  }

  /** The library's ids (special tokens included); its failures on a huge text are the text's, a 400. */
  private ids(text: string, where: string): number[] {
    try {
      return this.tokenizer.encode(text).ids
    } catch (err) {
      throw new AppError(
        'INVALID_REQUEST',
        `${where} cannot be tokenized (${err instanceof Error ? err.message : String(err)}); send a shorter text`,
        { cause: err },
      )
    }
  }

  /** Ids cut to max_length keeping the closing special tokens, or refused when the package does not truncate. */
  private fit(ids: number[], where: string, ofHead: boolean): number[] {
    const max = this.rule.maxLength
    if (ids.length <= max) return ids
    if (!this.rule.truncation)
      throw new AppError(
        'INVALID_REQUEST',
        `${where} has ${ofHead ? 'at least ' : ''}${ids.length} tokens, more than the model's max_length ${max} (this model does not truncate)`,
      )
    return [...ids.slice(0, max - this.suffix.length), ...this.suffix]
  }

  /** Many texts, padded into the token tensors (see `encode` for the errors; `where(i)` names text i). */
  encodeBatch(texts: readonly string[], where: (i: number) => string): EncodedTexts {
    const seq = this.rule.maxLength
    const ids = new BigInt64Array(texts.length * seq).fill(BigInt(this.rule.padId))
    const mask = new BigInt64Array(texts.length * seq)
    texts.forEach((text, i) => {
      this.encode(text, where(i)).forEach((id, j) => {
        ids[i * seq + j] = BigInt(id)
        mask[i * seq + j] = 1n
      })
    })
    return { rows: texts.length, seq, ids, mask }
  }

  /** One text as the flat `{ids input, mask input}` arrays of a routing example (no batch axis). */
  encodeExample(text: string, where: string): Record<string, number[]> {
    const { ids, mask } = this.encodeBatch([text], () => where)
    return {
      [this.rule.idsInput]: Array.from(ids, Number),
      [this.rule.maskInput]: Array.from(mask, Number),
    }
  }

  toString(): string {
    return `tokenizer ${this.label}`
  }
}

/** Characters of text per token the head of a long text keeps: far more than any tokenizer's pieces need. */
const HEAD_CHARS_PER_TOKEN = 32
/** The longest head read when the first has too few pieces (about 0.2 s for a worst-case run on one core). */
const LONGEST_HEAD_CHARS = 16_384

/**
 * The head of a text longer than `chars`: up to its first whitespace in [chars, 2·chars), else (a run of 2·chars
 * without whitespace, e.g. CJK or junk) cut at 2·chars, where only the pieces next to the cut can differ from the
 * whole text's, thousands of characters past the max_length tokens kept. Undefined when the text is not longer.
 */
function headAtWhitespace(text: string, chars: number): string | undefined {
  if (text.length <= chars) return undefined
  const ws = /\s/g
  ws.lastIndex = chars
  const at = ws.exec(text)?.index
  if (at !== undefined && at < 2 * chars) return text.slice(0, at)
  if (text.length <= 2 * chars) return undefined
  // Never split a surrogate pair.
  const high = text.charCodeAt(2 * chars - 1)
  return text.slice(0, high >= 0xd800 && high <= 0xdbff ? 2 * chars - 1 : 2 * chars)
}

/** Index where `run` occurs in `xs` as a contiguous run, or -1. */
function indexOfRun(xs: readonly number[], run: readonly number[]): number {
  for (let i = 0; i + run.length <= xs.length; i++)
    if (run.every((v, j) => xs[i + j] === v)) return i
  return -1
}
