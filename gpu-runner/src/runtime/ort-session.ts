/**
 * onnxruntime sessions with an honest execution provider: CUDA when asked for (or on `auto`) and loadable,
 * CPU otherwise. onnxruntime-node throws on `['cuda','cpu']` instead of falling back when the CUDA provider
 * library is missing (the npm tarball is CPU-only), so the fallback is ours, and the provider in use is reported.
 * @module
 */
import * as ort from 'onnxruntime-node'

export type ProviderChoice = 'auto' | 'cuda' | 'cpu'
export type Provider = 'cuda' | 'cpu'

export interface SessionOptions {
  provider?: ProviderChoice
  /** Intra-op threads; defaults to onnxruntime's choice (all cores). */
  threads?: number
}

export interface OpenedSession {
  session: ort.InferenceSession
  provider: Provider
  /** Why CUDA was not used, when it was asked for (auto or cuda) and failed. */
  fallbackReason?: string
}

function baseOptions(threads: number | undefined): ort.InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    ...(threads ? { intraOpNumThreads: threads, interOpNumThreads: 1 } : {}),
    // Several sessions in one process spin-wait against each other on small machines; measured 2x slowdowns
    // (handbook, factored-serving.md). Yielding threads removes the interference at no cost to one session.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  }
}

export async function openSession(
  model: Uint8Array | string,
  opts: SessionOptions = {},
): Promise<OpenedSession> {
  const choice = opts.provider ?? 'auto'
  const base = baseOptions(opts.threads)
  const create = (providers: string[]) =>
    typeof model === 'string'
      ? ort.InferenceSession.create(model, { ...base, executionProviders: providers })
      : ort.InferenceSession.create(model, { ...base, executionProviders: providers })
  if (choice === 'cpu') return { session: await create(['cpu']), provider: 'cpu' }
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
