/**
 * Twin packages on disk (`@twinserve/gpu-runner/package`): write one atomically, read and verify one.
 * @module
 */
export {
  EXTERNAL_DATA_SUFFIX,
  externalGraphPath,
  type LoadedPackage,
  loadPackage,
  readManifest,
  sha256File,
} from './load-package.ts'
export { packageVersion } from './package-version.ts'
export { type ManifestWithoutFiles, sha256, writePackage } from './write-package.ts'
