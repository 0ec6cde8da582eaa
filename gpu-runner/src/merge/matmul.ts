/**
 * Matrix products on onnxruntime: one Gemm graph per transpose combination, with symbolic dimensions, so one
 * cached session serves every shape (sessions are built once per backend, never per call). The SVD's heavy
 * products run here; JS loops are ~200× slower (toolchain handbook §2.4). Counts FLOPs and time so benchmarks
 * can report the rate the products reach.
 * @module
 */
import { AppError } from '@twinserve/shared'
import { GraphBuilder } from '../onnx/graph-builder.ts'
import {
  type OpenedSession,
  openSession,
  ort,
  type Provider,
  type ProviderChoice,
} from '../runtime/ort-session.ts'

export interface GemmOptions {
  /** Use Aᵀ: A is given as [k, m]. */
  transA?: boolean
  /** Use Bᵀ: B is given as [n, k]. */
  transB?: boolean
}

export interface MatmulStats {
  calls: number
  /** 2·m·n·k per call. */
  flops: number
  /** Wall time inside session.run, including the tensor hand-over. */
  seconds: number
}

function gemmGraph(transA: boolean, transB: boolean): Uint8Array {
  const g = new GraphBuilder(`gemm_${Number(transA)}${Number(transB)}`)
    .input('A', 'float', ['a0', 'a1'])
    .input('B', 'float', ['b0', 'b1'])
  g.node('Gemm', ['A', 'B'], {
    outputs: ['Y'],
    attrs: { transA: Number(transA), transB: Number(transB) },
  })
  g.output('Y', 'float', ['m', 'n'])
  return g.build()
}

export class MatmulBackend {
  readonly stats: MatmulStats = { calls: 0, flops: 0, seconds: 0 }
  private readonly sessions = new Map<string, Promise<OpenedSession>>()
  private openedProvider: Provider | undefined

  constructor(private readonly opts: { provider?: ProviderChoice; threads?: number } = {}) {}

  /** Sessions built so far (one per transpose combination used). */
  get sessionCount(): number {
    return this.sessions.size
  }

  /** The provider the sessions run on (known after the first product). */
  get provider(): Provider | undefined {
    return this.openedProvider
  }

  private session(transA: boolean, transB: boolean): Promise<OpenedSession> {
    const key = `${Number(transA)}${Number(transB)}`
    let s = this.sessions.get(key)
    if (!s) {
      s = openSession(gemmGraph(transA, transB), {
        provider: this.opts.provider ?? 'cpu',
        ...(this.opts.threads ? { threads: this.opts.threads } : {}),
      })
      this.sessions.set(key, s)
    }
    return s
  }

  /**
   * C = op(A)·op(B), all row-major float32.
   * @example await backend.gemm(a, [m, k], b, [k, n]) // → [m, n]
   */
  async gemm(
    a: Float32Array,
    aShape: readonly [number, number],
    b: Float32Array,
    bShape: readonly [number, number],
    opts: GemmOptions = {},
  ): Promise<Float32Array> {
    const transA = opts.transA ?? false
    const transB = opts.transB ?? false
    const [m, kA] = transA ? [aShape[1], aShape[0]] : aShape
    const [kB, n] = transB ? [bShape[1], bShape[0]] : bShape
    if (kA !== kB || a.length !== aShape[0] * aShape[1] || b.length !== bShape[0] * bShape[1])
      throw new AppError(
        'INTERNAL',
        `gemm: shapes [${aShape}]${transA ? 'ᵀ' : ''} × [${bShape}]${transB ? 'ᵀ' : ''} do not fit their data or each other`,
      )
    // onnxruntime refuses some zero-sized products; the answer is all zeros anyway.
    if (m === 0 || n === 0 || kA === 0) return new Float32Array(m * n)
    const opened = await this.session(transA, transB)
    this.openedProvider = opened.provider
    const t0 = performance.now()
    const out = await opened.session.run({
      A: new ort.Tensor('float32', a, [aShape[0], aShape[1]]),
      B: new ort.Tensor('float32', b, [bShape[0], bShape[1]]),
    })
    this.stats.seconds += (performance.now() - t0) / 1000
    this.stats.calls++
    this.stats.flops += 2 * m * n * kA
    const y = out.Y?.data
    if (!(y instanceof Float32Array) || y.length !== m * n)
      throw new AppError('INTERNAL', `gemm: onnxruntime returned ${out.Y?.dims} for [${m}, ${n}]`)
    return y
  }

  resetStats(): void {
    this.stats.calls = 0
    this.stats.flops = 0
    this.stats.seconds = 0
  }

  /** Releases the sessions; the backend can be used again (sessions are rebuilt). */
  async dispose(): Promise<void> {
    const all = [...this.sessions.values()]
    this.sessions.clear()
    for (const s of all) await (await s).session.release()
  }
}

let shared: MatmulBackend | undefined

/** The process-wide CPU backend the SVD uses unless given another. */
export function defaultMatmulBackend(): MatmulBackend {
  shared ??= new MatmulBackend()
  return shared
}
