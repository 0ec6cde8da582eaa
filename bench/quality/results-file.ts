/**
 * Rewrites one generated section of bench/RESULTS.md in place: the text between `<!-- <id>:start -->` and
 * `<!-- <id>:end -->`, or a new section appended at the end when the markers are absent. The file is written to a
 * temporary file and renamed, so a reader never sees half of it; the rest of the file is left byte for byte.
 * @module
 */
import { readFile, rename, writeFile } from 'node:fs/promises'

export async function replaceSection(path: string, id: string, body: string): Promise<void> {
  const start = `<!-- ${id}:start -->`
  const end = `<!-- ${id}:end -->`
  const text = await readFile(path, 'utf8')
  const block = `${start}\n${body.trim()}\n${end}`
  const a = text.indexOf(start)
  const b = text.indexOf(end)
  let next: string
  if (a >= 0 && b > a) next = `${text.slice(0, a)}${block}${text.slice(b + end.length)}`
  else next = `${text.trimEnd()}\n\n${block}\n`
  const tmp = `${path}.tmp-${process.pid}`
  await writeFile(tmp, next)
  await rename(tmp, path)
}
