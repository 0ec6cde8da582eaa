/**
 * Matrix products on onnxruntime: one Gemm graph per transpose combination (plus a fused residual-norm
 * graph), with symbolic dimensions, so one cached session serves every shape: sessions are built once per
 * backend, never per call. The SVD's heavy products run here rather than in JS loops; each backend counts FLOPs
 * and time, and `npm run bench:merge` reports the rate the products reach against onnxruntime's plain MatMul
 * (bench/RESULTS.md, "Merge engine").
 * @module
 */
import { AppError } from '@twinserve/shared'
import { GraphBuilder } from '../onnx/graph-builder.ts'
import { openSession, ort, type Provider, type ProviderChoice } from '../runtime/ort-session.ts'
import { openThreadedSession, type RunnableSession } from '../runtime/threaded-session.ts'

type Opened = { session: RunnableSession; provider: Provider }

export interface GemmOptions {
  /** Use Aᵀ: A is given as [k, m]. */
  transA?: boolean
  /** Use Bᵀ: B is given as [n, k]. */
  transB?: boolean
}

export interface CallStats {
  calls: number
  /** 2·m·n·k per product. */
  flops: number
  /** Wall time inside session.run, including the tensor hand-over. */
  seconds: number
}

export interface MatmulStats extends CallStats {
  /** The share of products of at least LARGE_FLOPS (the ones with the big matrix, not the helpers). */
  large: CallStats
}

/**
 * A product this big (25 MFLOP) is "large" in the stats: in the SVD that separates the products with the
 * task-vector matrix (≥ 2·768·768·32) from the sketch-sized helpers (Gram matrices, basis changes).
 */
export const LARGE_FLOPS = 2.5e7

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

/** ‖A − L·Rᵀ‖²_F without bringing the [m, n] product back to JS. */
function residualGraph(): Uint8Array {
  const g = new GraphBuilder('residual')
    .input('A', 'float', ['m', 'n'])
    .input('L', 'float', ['m', 'k'])
    .input('R', 'float', ['n', 'k'])
  const approx = g.node('Gemm', ['L', 'R'], { attrs: { transB: 1 } })
  const diff = g.node('Sub', ['A', approx])
  g.node('ReduceSumSquare', [diff], { outputs: ['Y'], attrs: { keepdims: 0 } })
  g.output('Y', 'float', [])
  return g.build({ opset: 17 })
}

export class MatmulBackend {
  readonly stats: MatmulStats = {
    calls: 0,
    flops: 0,
    seconds: 0,
    large: { calls: 0, flops: 0, seconds: 0 },
  }
  private readonly sessions = new Map<string, Promise<Opened>>()
  private openedProvider: Provider | undefined

  /**
   * @param opts.threaded run each graph's session in a thread of its own (threaded-session.ts): the runner's
   * materialised path, so that its products do not stall the event loop
   */
  constructor(
    private readonly opts: {
      provider?: ProviderChoice
      threads?: number
      threaded?: boolean
      /** With `threaded`: nice steps below the event loop (threaded-session.ts). */
      lowerPriority?: number
    } = {},
  ) {}

  /** Sessions built so far (one per graph kind used). */
  get sessionCount(): number {
    return this.sessions.size
  }

  /** The provider the sessions run on (known after the first product). */
  get provider(): Provider | undefined {
    return this.openedProvider
  }

  private session(key: string, build: () => Uint8Array): Promise<Opened> {
    let s = this.sessions.get(key)
    if (!s) {
      const opts = {
        provider: this.opts.provider ?? 'cpu',
        ...(this.opts.threads ? { threads: this.opts.threads } : {}),
      }
      s = this.opts.threaded
        ? openThreadedSession(build(), {
            ...opts,
            transfer: true,
            ...(this.opts.lowerPriority ? { lowerPriority: this.opts.lowerPriority } : {}),
          })
        : openSession(build(), opts)
      this.sessions.set(key, s)
    }
    return s
  }

  private async run(
    key: string,
    build: () => Uint8Array,
    feeds: Record<string, ort.Tensor>,
    flops: number,
  ): Promise<ort.Tensor | undefined> {
    const opened = await this.session(key, build)
    this.openedProvider = opened.provider
    const t0 = performance.now()
    const out = await opened.session.run(feeds)
    const seconds = (performance.now() - t0) / 1000
    for (const s of flops >= LARGE_FLOPS ? [this.stats, this.stats.large] : [this.stats]) {
      s.calls++
      s.flops += flops
      s.seconds += seconds
    }
    return out.Y
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
    const y = (
      await this.run(
        `gemm${Number(transA)}${Number(transB)}`,
        () => gemmGraph(transA, transB),
        {
          A: new ort.Tensor('float32', a, [aShape[0], aShape[1]]),
          B: new ort.Tensor('float32', b, [bShape[0], bShape[1]]),
        },
        2 * m * n * kA,
      )
    )?.data
    if (!(y instanceof Float32Array) || y.length !== m * n)
      throw new AppError('INTERNAL', `gemm: onnxruntime returned no [${m}, ${n}] float tensor`)
    return y
  }

  /**
   * ‖A − L·Rᵀ‖²_F for A [m, n], L [m, k], R [n, k] (a low-rank approximation's squared error), computed
   * inside onnxruntime (float32 accumulation) so the [m, n] product never crosses into JS.
   */
  async residualSquared(
    a: Float32Array,
    m: number,
    n: number,
    left: Float32Array,
    right: Float32Array,
    k: number,
  ): Promise<number> {
    if (a.length !== m * n || left.length !== m * k || right.length !== n * k)
      throw new AppError('INTERNAL', `residualSquared: data does not fit ${m}×${n} at rank ${k}`)
    if (k === 0) {
      let s = 0
      for (let i = 0; i < a.length; i++) s += (a[i] as number) ** 2
      return s
    }
    const y = (
      await this.run(
        'residual',
        residualGraph,
        {
          A: new ort.Tensor('float32', a, [m, n]),
          L: new ort.Tensor('float32', left, [m, k]),
          R: new ort.Tensor('float32', right, [n, k]),
        },
        2 * m * n * k,
      )
    )?.data
    const v = y instanceof Float32Array ? y[0] : undefined
    if (v === undefined)
      throw new AppError('INTERNAL', 'residualSquared: onnxruntime returned no scalar')
    return v
  }

  resetStats(): void {
    for (const s of [this.stats, this.stats.large]) {
      s.calls = 0
      s.flops = 0
      s.seconds = 0
    }
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
