/**
 * Float16 factor storage, checked side by side with float32 on the same package configuration: bytes, session
 * creation time, whether onnxruntime folded the factors' Casts away (the optimised graph is dumped and its
 * remaining Cast nodes counted), batch-1 latency and batch-256 throughput of the routed twin graph (the arms
 * timed back to back, run by run; throughput from the median batch time), and how far the outputs move.
 * @module
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { onnx } from '@twinserve/gpu-runner/onnx'
import { ort } from '@twinserve/gpu-runner/runtime'
import { encodeControls } from '@twinserve/gpu-runner/twin-contract'
import type { TaskData } from './evaluate.ts'

export interface DtypeArm {
  label: string
  bytes: number
  /** Median session creation, ms. */
  createMs: number
  /** Cast nodes left in onnxruntime's optimised graph (0: every factor Cast was folded at load). */
  castsAfterOptimization: number
  castsInFile: number
  batch1: { p50: number; p99: number }
  /** Rows per second at batch 256. */
  batch256RowsPerSecond: number
}

export interface DtypeCheck {
  arms: DtypeArm[]
  /** max |logits(float16) − logits(float32)| over the sample, and the logits' max |value|. */
  maxAbsDiff: number
  scale: number
  rounds: number
  batch1Runs: number
  batch256Runs: number
}

const sessionOptions: ort.InferenceSession.SessionOptions = {
  graphOptimizationLevel: 'all',
  executionProviders: ['cpu'],
  extra: { session: { intra_op: { allow_spinning: '0' } } },
}

function countCasts(bytes: Uint8Array): number {
  const graph = onnx.ModelProto.decode(bytes).graph
  return (graph?.node ?? []).filter((n) => n.opType === 'Cast').length
}

/** Routed rows (the embedded router, dense): the factored graph as served. */
function feeds(x: Float32Array, rows: number, T: number): Record<string, ort.Tensor> {
  return {
    pixels: new ort.Tensor('float32', x.subarray(0, rows * 784), [rows, 784]),
    ...encodeControls(Array(rows).fill({ useRouter: 1 }), T),
  }
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0
}

export async function checkFloat16(
  models: readonly { label: string; bytes: Uint8Array }[],
  experts: number,
  sample: TaskData,
  opts: { rounds?: number; batch1Runs?: number; batch256Runs?: number } = {},
): Promise<DtypeCheck> {
  const rounds = opts.rounds ?? 5
  const batch1Runs = opts.batch1Runs ?? 400
  const batch256Runs = opts.batch256Runs ?? 40
  const dir = await mkdtemp(join(tmpdir(), 'twinserve-f16-'))
  const sessions: ort.InferenceSession[] = []
  try {
    const arms = []
    for (const [i, m] of models.entries()) {
      const create: number[] = []
      let session: ort.InferenceSession | undefined
      const optimized = join(dir, `opt-${i}.onnx`)
      for (let k = 0; k < 3; k++) {
        const t0 = performance.now()
        const s = await ort.InferenceSession.create(m.bytes, {
          ...sessionOptions,
          ...(k === 0 ? { optimizedModelFilePath: optimized } : {}),
        })
        create.push(performance.now() - t0)
        if (session) await s.release()
        else session = s
      }
      sessions.push(session as ort.InferenceSession)
      arms.push({
        label: m.label,
        bytes: m.bytes.byteLength,
        createMs: quantile(create, 0.5),
        castsInFile: countCasts(m.bytes),
        castsAfterOptimization: countCasts(await readFile(optimized)),
        lat: [] as number[],
        big: [] as number[],
      })
    }
    const x = sample.split.x
    const one = feeds(x, 1, experts)
    const big = feeds(x, 256, experts)
    for (const s of sessions) for (let w = 0; w < 20; w++) await s.run(one) // warm-up
    // Paired: each iteration times every arm back to back, so load from other processes hits both alike.
    const time = async (s: ort.InferenceSession, f: Record<string, ort.Tensor>) => {
      const t0 = performance.now()
      await s.run(f)
      return performance.now() - t0
    }
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < batch1Runs; k++)
        for (const [i, s] of sessions.entries()) arms[i]?.lat.push(await time(s, one))
      for (let k = 0; k < batch256Runs; k++)
        for (const [i, s] of sessions.entries()) arms[i]?.big.push(await time(s, big))
    }
    const outs = []
    const rows = Math.min(1000, sample.split.n)
    for (const s of sessions)
      outs.push((await s.run(feeds(x, rows, experts), ['logits'])).logits?.data as Float32Array)
    let maxAbsDiff = 0
    let scale = 0
    const [a, b] = outs
    if (a && b)
      for (let i = 0; i < a.length; i++) {
        maxAbsDiff = Math.max(maxAbsDiff, Math.abs((a[i] as number) - (b[i] as number)))
        scale = Math.max(scale, Math.abs(a[i] as number))
      }
    return {
      arms: arms.map((a) => ({
        label: a.label,
        bytes: a.bytes,
        createMs: a.createMs,
        castsInFile: a.castsInFile,
        castsAfterOptimization: a.castsAfterOptimization,
        batch1: { p50: quantile(a.lat, 0.5), p99: quantile(a.lat, 0.99) },
        batch256RowsPerSecond: (256 * 1000) / quantile(a.big, 0.5),
      })),
      maxAbsDiff,
      scale,
      rounds,
      batch1Runs,
      batch256Runs,
    }
  } finally {
    for (const s of sessions) await s.release()
    await rm(dir, { recursive: true, force: true })
  }
}
