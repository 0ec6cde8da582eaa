import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { cudaUnavailableReason } from './cuda-probe.ts'

const REPO = fileURLToPath(new URL('../../../', import.meta.url))
const MODEL = `${REPO}zoo/fashion/models/base.onnx`

describe('CUDA probe', () => {
  // A child process, because onnxruntime's native loader writes to the process's own stderr (fd 2), which
  // vitest cannot intercept.
  it('opening a session on auto falls back to CPU without onnxruntime printing a loader error', () => {
    const script = `
      import { openSession } from './gpu-runner/src/runtime/ort-session.ts'
      const opened = await openSession(${JSON.stringify(MODEL)}, { provider: 'auto', threads: 1 })
      console.log(JSON.stringify({ provider: opened.provider, fallbackReason: opened.fallbackReason }))`
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      {
        cwd: REPO,
        encoding: 'utf8',
      },
    )
    expect(r.status, r.stderr).toBe(0)
    const opened = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}')
    if (cudaUnavailableReason() === undefined) {
      // A CUDA build: onnxruntime was asked, and its answer decides (nothing to check about stderr).
      expect(['cuda', 'cpu']).toContain(opened.provider)
      return
    }
    expect(opened).toEqual({ provider: 'cpu', fallbackReason: cudaUnavailableReason() })
    expect(r.stderr).not.toMatch(/Failed to load library|providers_shared/)
  })

  it('names the CPU-only build as the reason here (the npm tarball ships no CUDA provider libraries)', () => {
    // The repository's .npmrc skips onnxruntime-node's CUDA download, so a checkout has the CPU-only build.
    expect(cudaUnavailableReason()).toMatch(/CPU-only build/)
  })
})
