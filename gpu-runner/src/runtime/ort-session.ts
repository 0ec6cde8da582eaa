/**
 * onnxruntime sessions with an honest execution provider: CUDA when asked for (or on `auto`) and loadable,
 * CPU otherwise. onnxruntime-node throws on `['cuda','cpu']` instead of falling back when the CUDA provider
 * library is missing (the npm tarball is CPU-only), so the fallback is ours, and the provider in use is reported.
 * @module
 */
import * as ort from 'onnxruntime-node'
import { cudaUnavailableReason } from './cuda-probe.ts'

export type ProviderChoice = 'auto' | 'cuda' | 'cpu'
export type Provider = 'cuda' | 'cpu'

export interface SessionOptions {
  provider?: ProviderChoice
  /** Intra-op threads; defaults to onnxruntime's choice (all cores). */
  threads?: number
  /**
   * Let intra-op threads spin-wait for work between runs (onnxruntime's own default). Off unless asked for:
   * with several sessions in one process, one session's spinning threads take the cores another session needs
   * (measured by `npm run bench:spinning`, bench/RESULTS.md).
   */
  spinning?: boolean
}

export interface OpenedSession {
  session: ort.InferenceSession
  provider: Provider
  /** Why CUDA was not used, when it was asked for (auto or cuda) and failed. */
  fallbackReason?: string
}

/** onnxruntime's options for a session the runner opens (without the execution providers). */
export function sessionOptions(opts: SessionOptions): ort.InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    ...(opts.threads ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {}),
    extra: { session: { intra_op: { allow_spinning: opts.spinning ? '1' : '0' } } },
  }
}

export async function openSession(
  model: Uint8Array | string,
  opts: SessionOptions = {},
): Promise<OpenedSession> {
  const choice = opts.provider ?? 'auto'
  const base = sessionOptions(opts)
  const create = (providers: string[]) =>
    typeof model === 'string'
      ? ort.InferenceSession.create(model, { ...base, executionProviders: providers })
      : ort.InferenceSession.create(model, { ...base, executionProviders: providers })
  if (choice === 'cpu') return { session: await create(['cpu']), provider: 'cpu' }
  // Probe before asking: onnxruntime prints a red loader error on CPU-only builds before it throws.
  const noCuda = cudaUnavailableReason()
  if (noCuda) return { session: await create(['cpu']), provider: 'cpu', fallbackReason: noCuda }
  try {
    return { session: await create(['cuda']), provider: 'cuda' }
  } catch (err) {
    const fallbackReason = err instanceof Error ? err.message.split('\n')[0] : String(err)
    return {
      session: await create(['cpu']),
      provider: 'cpu',
      ...(fallbackReason ? { fallbackReason } : {}),
    }
  }
}

export { ort }
