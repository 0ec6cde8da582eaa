/**
 * A package's version id, as the V2 protocol's `versions` and `/versions/{v}/…` routes name it: the first 12 hex
 * digits of the sha256 over the manifest's file hashes. Two builds with identical files share a version, and any
 * changed byte in any file gives a new one, so a client pinning a version knows exactly which weights answer.
 * @module
 */
import { createHash } from 'node:crypto'
import type { PackageManifest } from '@twinserve/shared'

export function packageVersion(manifest: Pick<PackageManifest, 'files'>): string {
  const lines = Object.entries(manifest.files)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([path, sha]) => `${sha}  ${path}\n`)
    .join('')
  return createHash('sha256').update(lines).digest('hex').slice(0, 12)
}
