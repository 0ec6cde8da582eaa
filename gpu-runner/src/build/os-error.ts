/**
 * What a build failure caused by the operating system means, in words (issue #16, case 7: EACCES, ENOSPC and
 * EROFS printed "unexpected error" with a stack trace, and a read-only filesystem was reported as ENOENT).
 * Node's recursive mkdir answers ENOENT when it cannot create a missing directory for another reason (a
 * read-only filesystem, no permission); the real reason is found by trying to create the first missing
 * directory alone.
 * @module
 */
import { mkdir, rmdir, stat } from 'node:fs/promises'
import { dirname, join, relative, sep } from 'node:path'

interface SystemError {
  code: string
  syscall?: string
  path?: string
}

function isSystemError(err: unknown): err is SystemError {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string'
}

/** The deepest existing directory above `path`, and the first component below it that is missing. */
async function firstMissing(path: string): Promise<string | undefined> {
  let child = path
  let parent = dirname(path)
  while (parent !== child) {
    if (
      await stat(parent).then(
        () => true,
        () => false,
      )
    )
      return join(parent, relative(parent, child).split(sep)[0] ?? '')
    child = parent
    parent = dirname(parent)
  }
  return undefined
}

/** The real code behind a recursive mkdir's ENOENT, by creating the first missing directory alone. */
async function trueMkdirCode(path: string): Promise<string | undefined> {
  const missing = await firstMissing(path)
  if (!missing) return undefined
  try {
    await mkdir(missing)
    await rmdir(missing)
    return undefined
  } catch (err) {
    return isSystemError(err) ? err.code : undefined
  }
}

const VERBS: Record<string, string> = {
  mkdir: 'create the directory',
  open: 'open',
  write: 'write',
  rename: 'move into place',
  rmdir: 'remove',
  rm: 'remove',
  unlink: 'remove',
  scandir: 'list',
  copyfile: 'copy',
}

/**
 * A message naming the path, the cause in words and the code, or undefined when `err` is not an OS error.
 * @example describeOsError(erofs) // "cannot create the directory /mnt/ro/pkg: the filesystem is read-only (EROFS)"
 */
export async function describeOsError(err: unknown): Promise<string | undefined> {
  if (!isSystemError(err) || !/^E[A-Z]+$/.test(err.code)) return undefined
  let code = err.code
  if (code === 'ENOENT' && err.syscall === 'mkdir' && err.path)
    code = (await trueMkdirCode(err.path)) ?? code
  const what = `${VERBS[err.syscall ?? ''] ?? err.syscall ?? 'use'} ${err.path ?? 'the package files'}`
  const causes: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'the filesystem is read-only',
    ENOSPC: 'no space left on the device',
    EDQUOT: 'the disk quota is exhausted',
    ENOENT: 'no such file or directory',
    ENOTDIR: 'a part of the path is not a directory',
    EISDIR: 'it is a directory',
    EEXIST: 'it already exists',
    EMFILE: 'too many open files',
    EBUSY: 'it is busy',
  }
  return `cannot ${what}: ${causes[code] ?? 'the operating system refused'} (${code})`
}
