/**
 * Fenced code blocks of a Markdown guide, for the tests that run the docs (test/infra/doc-commands.test.ts runs
 * each command line of every `sh` block; test/e2e/gateway-generation.test.ts runs docs/generate.md's blocks whole
 * against a real gateway and runner; test/e2e/pytorch-guide.test.ts runs one section of docs/user-guide.md).
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

/**
 * The section of `markdown` under the heading whose text starts with `title`, up to the next heading of the same
 * or a higher level (so its subsections are included); throws when there is no such heading.
 */
export function docSection(markdown: string, title: string): string {
  const lines = markdown.split('\n')
  let inFence = false
  let start = -1
  let level = 0
  for (const [i, line] of lines.entries()) {
    if (line.startsWith('```')) inFence = !inFence
    const m = inFence ? null : /^(#+) (.*)$/.exec(line)
    if (!m) continue
    const depth = (m[1] ?? '').length
    if (start >= 0 && depth <= level) return lines.slice(start, i).join('\n')
    if (start < 0 && (m[2] ?? '').startsWith(title)) {
      start = i
      level = depth
    }
  }
  if (start < 0) throw new Error(`no heading starting with '${title}'`)
  return lines.slice(start).join('\n')
}

/** A shell block's commands: continuation lines joined, blank lines and comments left out. */
export function commandLines(block: string): string[] {
  return block
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
}
