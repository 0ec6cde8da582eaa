/**
 * Fenced code blocks of a Markdown guide, for the tests that run the docs (test/infra/doc-commands.test.ts runs
 * each command line of every `sh` block; test/e2e/gateway-generation.test.ts runs docs/generate.md's blocks whole
 * against a real gateway and runner).
 * @module
 */

export interface DocBlock {
  /** The fence's language (`sh`, `js`, `json`, …; empty when none). */
  lang: string
  /** The block's text, without the fences. */
  text: string
}

/** Every fenced block of `markdown`, in order. */
export function docBlocks(markdown: string): DocBlock[] {
  return [...markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({
    lang: m[1] ?? '',
    text: m[2] ?? '',
  }))
}

/** A shell block's commands: continuation lines joined, blank lines and comments left out. */
export function commandLines(block: string): string[] {
  return block
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
}
