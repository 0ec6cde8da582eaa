/**
 * Session-level benchmark: onnxruntime sessions on the packages' graphs, in this process, with the runner's
 * session options (ort-session.ts), so that the merge's own cost is isolated from HTTP, JSON and batching.
 * Every case runs interleaved with the others in rounds (the machine's drift hits them all alike), and each is
 * reported with its ratio to the plain shared model measured in the same rounds.
 *
 * The materialised path is timed through the runner's own ServedModel (load-model.ts) on a merge_method request:
 * a fresh mix each call is a cache miss (merge + run, what the Twin-Merging reference code does per input), the
 * same mix again is a hit (run only).
 * @module
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { xorshift32 } from '@twinserve/gpu-runner/build'
import { mergeTensor } from '@twinserve/gpu-runner/merge'
import type { ServedModel } from '@twinserve/gpu-runner/model'
import { loadModel } from '@twinserve/gpu-runner/model'
import { type INodeProto, onnx } from '@twinserve/gpu-runner/onnx'
import { openSession, ort, type Provider } from '@twinserve/gpu-runner/runtime'
import { controlsOf, encodeControls, TWIN_INPUT_KEYS } from '@twinserve/gpu-runner/twin-contract'
import type {
  InferenceRequest,
  PackageManifest,
  TensorMetadata,
  TwinInputKey,
} from '@twinserve/shared'
import { BERT, routingTokens } from './bert-encoder.ts'
import { summarize } from './report.ts'

type Feeds = Record<string, ort.Tensor>

export interface SessionCase {
  key: string
  label: string
  /** Runs one batch of `rows`; returns when done. */
  run: () => Promise<unknown>
  rows: number
}

export interface CaseResult {
  key: string
  label: string
  rows: number
  n: number
  p50: number
  p99: number
  mean: number
  /** rows per second at the mean latency (one run at a time). */
  rowsPerS: number
  /** Every timed run in order, ms (with one run per round, sample i of each case is from round i). */
  samples: number[]
}

/** Deterministic example inputs for a package's declared inputs: token ids from the routing distribution, or floats. */
export function exampleInputs(
  inputs: readonly TensorMetadata[],
  rows: number,
  seed: number,
): Feeds {
  const feeds: Feeds = {}
  const next = xorshift32(seed)
  for (const input of inputs) {
    const dims = input.shape.map((d, i) => (i === 0 ? rows : d < 0 ? BERT.seq : d))
    const n = dims.reduce((a, b) => a * b, 1)
    if (input.datatype === 'INT64') {
      const per = n / rows
      const data = new BigInt64Array(n)
      for (let r = 0; r < rows; r++) {
        const tokens = routingTokens((seed + r) % 8, seed * 31 + r)
        for (let j = 0; j < per; j++) data[r * per + j] = BigInt(tokens[j % tokens.length] ?? 0)
      }
      feeds[input.name] = new ort.Tensor('int64', data, dims)
    } else
      feeds[input.name] = new ort.Tensor('float32', Float32Array.from({ length: n }, next), dims)
  }
  return feeds
}

/**
 * The twin graph's control inputs: every row with the same explicit mix, or the router (top_k per row).
 * @param controls the controls the graph has (an older package lacks the optional ones)
 */
export function twinControls(
  rows: number,
  T: number,
  opts: { mix?: readonly number[]; router?: boolean; topK?: number },
  controls: readonly TwinInputKey[] = TWIN_INPUT_KEYS,
): Feeds {
  const row = {
    ...(opts.mix ? { mixWeights: opts.mix } : {}),
    useRouter: opts.router ? 1 : 0,
    ...(opts.topK !== undefined ? { topK: opts.topK } : {}),
  }
  return encodeControls(Array(rows).fill(row), T, controls)
}

/** A normalised random mix over `experts` of T (the rest 0). */
export function randomMix(T: number, experts: number, seed: number): number[] {
  let s = (seed * 2654435761) >>> 0 || 1
  const w = Array.from({ length: T }, (_, t) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return t < experts ? 0.2 + s / 2 ** 32 : 0
  })
  const sum = w.reduce((a, b) => a + b, 0)
  return w.map((x) => x / sum)
}

/**
 * The twin graph as the builder wrote it before the router gate (commit 6d09a8e): the `If`'s router branch inlined
 * into the main graph, so every run computes the router whether or not a row uses it. For a before/after
 * comparison in one process.
 */
export async function ungatedTwin(path: string): Promise<Uint8Array> {
  const model = onnx.ModelProto.decode(await readFile(path))
  const graph = model.graph
  const nodes = graph?.node ?? []
  const at = nodes.findIndex((n) => n.opType === 'If')
  const gate = nodes[at]
  if (!graph || !gate) throw new Error(`${path} has no router gate to inline`)
  const then = gate.attribute?.find((a) => a.name === 'then_branch')?.g
  const out = then?.output?.[0]?.name
  if (!then || !out) throw new Error(`${path}: the gate has no then branch`)
  const inlined: INodeProto[] = [
    ...(then.node ?? []),
    {
      name: 'ungated/identity',
      opType: 'Identity',
      input: [out],
      output: [gate.output?.[0] ?? ''],
    },
  ]
  graph.node = [...nodes.slice(0, at), ...inlined, ...nodes.slice(at + 1)]
  return onnx.ModelProto.encode(model).finish()
}

export class SessionPool {
  private readonly sessions = new Map<string, ort.InferenceSession>()
  constructor(private readonly provider: Provider | 'auto') {}

  async get(path: string, load?: () => Promise<Uint8Array>): Promise<ort.InferenceSession> {
    const hit = this.sessions.get(path)
    if (hit) return hit
    const { session } = await openSession(load ? await load() : path, { provider: this.provider })
    this.sessions.set(path, session)
    return session
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await s.release()
    this.sessions.clear()
  }
}

/** A twin package's graph cases at `rows` per run. */
export async function twinCases(
  pool: SessionPool,
  dir: string,
  manifest: PackageManifest,
  rows: number,
  cases: { key: string; label: string; mix?: readonly number[]; router?: boolean; topK?: number }[],
  opts: { ungated?: boolean } = {},
): Promise<SessionCase[]> {
  const T = manifest.experts.length
  const path = join(dir, manifest.model.file)
  const twin = opts.ungated
    ? await pool.get(`${path}#ungated`, () => ungatedTwin(path))
    : await pool.get(path)
  const x = exampleInputs(manifest.inputs, rows, 7)
  return cases.map((c) => {
    const feeds = { ...x, ...twinControls(rows, T, c, controlsOf(twin.inputNames)) }
    return { key: c.key, label: c.label, rows, run: () => twin.run(feeds) }
  })
}

/** The plain shared model (the package's `shared` variant file) at `rows` per run. */
export async function plainCase(
  pool: SessionPool,
  dir: string,
  manifest: PackageManifest,
  rows: number,
): Promise<SessionCase> {
  const file = manifest.variants.find((v) => v.name === 'shared')?.file
  if (!file) throw new Error(`${manifest.name} has no variants/shared.onnx to compare with`)
  const s = await pool.get(join(dir, file))
  const x = exampleInputs(manifest.inputs, rows, 7)
  return { key: 'plain', label: 'plain shared model', rows, run: () => s.run(x) }
}

/** The materialised path through the runner's ServedModel: fresh mixes (cache misses) or one mix (hits). */
export async function materializedCases(
  dir: string,
  provider: Provider | 'auto',
): Promise<{ cases: SessionCase[]; model: ServedModel }> {
  const model = await loadModel(dir, {
    provider,
    merge: mergeTensor,
    mergeCache: { maxEntries: 2, maxBytes: 4096 * 2 ** 20 },
  })
  const m = model.manifest
  const x = exampleInputs(m.inputs, 1, 7)
  const inputs: InferenceRequest['inputs'] = Object.entries(x).map(([name, t]) => ({
    name,
    shape: [...t.dims],
    datatype: t.type === 'int64' ? 'INT64' : 'FP32',
    data: Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v)),
  }))
  const request = (weights: readonly number[]): InferenceRequest => ({
    inputs,
    outputs: [{ name: m.outputs[0]?.name ?? '' }],
    parameters: {
      experts: Object.fromEntries(model.experts.map((e, i) => [e, weights[i] ?? 0])),
      merge_method: 'task_arithmetic',
      lambda: 1,
    },
  })
  const T = m.experts.length
  let call = 0
  const fixed = randomMix(T, T, 12345)
  const once = async (weights: readonly number[]) => {
    const r = await model.runIsolated([model.prepare(request(weights))])
    if (r[0] instanceof Error) throw r[0]
  }
  return {
    model,
    cases: [
      {
        key: 'materialized-miss',
        label: 'materialised per request (merge + run)',
        rows: 1,
        run: () => once(randomMix(T, T, ++call)),
      },
      {
        key: 'materialized-hit',
        label: 'materialised, cached mix (run only)',
        rows: 1,
        run: () => once(fixed),
      },
    ],
  }
}

/**
 * Runs the cases interleaved: `warmup` untimed runs each, then `rounds` rounds of `perRound` timed runs each.
 * @param budgetMs per case, a cap on its timed total (slow cases get fewer samples)
 */
export async function measure(
  cases: readonly SessionCase[],
  opts: { warmup: number; rounds: number; perRound: number; budgetMs?: number },
): Promise<CaseResult[]> {
  for (const c of cases) for (let i = 0; i < opts.warmup; i++) await c.run()
  const samples = new Map<string, number[]>(cases.map((c) => [c.key, []]))
  const spent = new Map<string, number>(cases.map((c) => [c.key, 0]))
  for (let round = 0; round < opts.rounds; round++)
    for (const c of cases) {
      const per = Math.max(1, opts.perRound)
      for (let i = 0; i < per; i++) {
        if (opts.budgetMs !== undefined && (spent.get(c.key) ?? 0) > opts.budgetMs) break
        const t = performance.now()
        await c.run()
        const ms = performance.now() - t
        samples.get(c.key)?.push(ms)
        spent.set(c.key, (spent.get(c.key) ?? 0) + ms)
      }
    }
  return cases.map((c) => {
    const all = samples.get(c.key) ?? []
    const s = summarize(all)
    return {
      key: c.key,
      label: c.label,
      rows: c.rows,
      ...s,
      rowsPerS: (1000 * c.rows) / s.mean,
      samples: all,
    }
  })
}
