/**
 * Whether onnxruntime-node can have a CUDA execution provider here, decided without asking onnxruntime. Asking it
 * (creating a session with `['cuda']`) on the npm tarball's CPU-only build makes its native loader print a red
 * `Failed to load library libonnxruntime_providers_shared.so` on stderr before it throws, on every machine without
 * CUDA. The CUDA build (the runner image: `ONNXRUNTIME_NODE_INSTALL=cuda12`) puts both provider libraries beside the
 * binding, so their absence is a quiet, certain "no". When they are present, onnxruntime is asked, and what it
 * prints then is worth reading (a driver or cuDNN problem on a machine meant for CUDA).
 * @module
 */
import { existsSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

const PROVIDER_LIBRARIES = [
  'libonnxruntime_providers_shared.so',
  'libonnxruntime_providers_cuda.so',
]

/** The folders onnxruntime-node loads its binding from (`bin/napi-v*\/<platform>/<arch>`). */
function bindingDirs(): string[] {
  let pkgDir: string
  try {
    pkgDir = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'))
  } catch {
    return []
  }
  const bin = join(pkgDir, 'bin')
  if (!existsSync(bin)) return []
  return readdirSync(bin)
    .filter((d) => d.startsWith('napi-v'))
    .map((d) => join(bin, d, process.platform, process.arch))
}

/** `undefined` when CUDA may load (ask onnxruntime); otherwise why it cannot, in one line. */
export function cudaUnavailableReason(): string | undefined {
  if (process.platform !== 'linux' && process.platform !== 'win32')
    return `onnxruntime-node has no CUDA provider on ${process.platform}`
  if (process.platform === 'win32') return undefined
  const dirs = bindingDirs()
  if (dirs.some((d) => PROVIDER_LIBRARIES.every((lib) => existsSync(join(d, lib)))))
    return undefined
  return 'onnxruntime-node is the CPU-only build (no CUDA provider libraries beside its binding)'
}
