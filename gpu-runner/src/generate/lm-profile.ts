/**
 * What generating text with a decoder package needs beyond its graph: the tokenizer, its special ids, the ids
 * that end a sequence, the context length and the chat template. Read from a directory holding the tokenizer's
 * `tokenizer.json` (+ `tokenizer_config.json`) and a `zoo.json` in the LM zoo's form (zoo/lm/models: the
 * `tokenizer`, `serving` and `chatTemplate` sections), passed to the runner as `--generation <model>=<dir>`.
 *
 * The chat template is the zoo's, rendered by plain substitution (no Jinja):
 * `bos` + for each message `messageTemplate` with {role} and {content} + `generationPrompt`; for lm-twin
 * `<|bos|>` + `<|{role}|>\n{content}<|end|>\n`… + `<|assistant|>\n`, encoded without adding special tokens
 * (it starts with BOS already). The assistant's turn ends at `<|end|>`, one of the stop ids.
 * @module
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'
import { AppError } from '@twinserve/shared'
import { z } from 'zod'
import type { Detokenizer } from './text-stream.ts'

/** The sections of zoo.json generation reads (the file has many more, which pass). */
export const LmProfileFileSchema = z.looseObject({
  tokenizer: z.looseObject({
    bosTokenId: z.number().int().nonnegative(),
    eosTokenId: z.number().int().nonnegative(),
    padTokenId: z.number().int().nonnegative(),
  }),
  serving: z.looseObject({
    maxContext: z.number().int().positive(),
    stopTokenIds: z.array(z.number().int().nonnegative()),
  }),
  chatTemplate: z.looseObject({
    bos: z.string(),
    messageTemplate: z.string().includes('{role}').includes('{content}'),
    generationPrompt: z.string(),
    roles: z.array(z.string()).min(1),
  }),
})
export type LmProfileFile = z.infer<typeof LmProfileFileSchema>

export interface ChatTurn {
  role: string
  content: string
}

export class LmProfile implements Detokenizer {
  private readonly tokenCache = new Map<number, string>()

  constructor(
    readonly tokenizer: Tokenizer,
    readonly file: LmProfileFile,
  ) {}

  static async load(dir: string): Promise<LmProfile> {
    const read = async (name: string, optional = false): Promise<unknown> => {
      try {
        return JSON.parse(await readFile(join(dir, name), 'utf8'))
      } catch (err) {
        if (optional) return undefined
        throw new AppError(
          'INVALID_MODEL',
          `generation profile ${dir}: cannot read ${name}: ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        )
      }
    }
    const parsed = LmProfileFileSchema.safeParse(await read('zoo.json'))
    if (!parsed.success)
      throw new AppError(
        'INVALID_MODEL',
        `generation profile ${dir}/zoo.json: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
      )
    const json = (await read('tokenizer.json')) as object
    const config = ((await read('tokenizer_config.json', true)) ?? {}) as object
    return new LmProfile(new Tokenizer(json, config), parsed.data)
  }

  get maxContext(): number {
    return this.file.serving.maxContext
  }

  get stopTokenIds(): readonly number[] {
    return this.file.serving.stopTokenIds
  }

  /** A raw prompt's ids: BOS, then the text's pieces (the tokenizer's template adds the BOS). */
  encodePrompt(text: string): number[] {
    return this.tokenizer.encode(text).ids
  }

  /** The chat template rendered (see the module comment). */
  renderChat(messages: readonly ChatTurn[]): string {
    const t = this.file.chatTemplate
    for (const m of messages)
      if (!t.roles.includes(m.role))
        throw new AppError(
          'INVALID_REQUEST',
          `messages: role '${m.role}' is not in this model's chat template (${t.roles.join(', ')})`,
        )
    const body = messages
      .map((m) => t.messageTemplate.replace('{role}', m.role).replace('{content}', m.content))
      .join('')
    return t.bos + body + t.generationPrompt
  }

  encodeChat(messages: readonly ChatTurn[]): number[] {
    return this.tokenizer.encode(this.renderChat(messages), { add_special_tokens: false }).ids
  }

  decode(ids: readonly number[]): string {
    // tokenizers.js refuses an empty list; a sequence whose first token was a stop token has no text.
    if (ids.length === 0) return ''
    return this.tokenizer.decode([...ids], { skip_special_tokens: true })
  }

  /** One token's text as OpenAI's logprobs name it (special tokens by their names). */
  tokenText(id: number): string {
    let t = this.tokenCache.get(id)
    if (t === undefined) {
      t = this.tokenizer.decode([id], { skip_special_tokens: false })
      this.tokenCache.set(id, t)
    }
    return t
  }
}
