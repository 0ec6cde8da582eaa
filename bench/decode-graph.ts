/**
 * The decode graph (issue 14, speed; gpu-runner/src/generate/decode-graph.ts) on zoo/lm/package, outside the engine:
 * how many nodes it leaves, how far its logits move from the graph as served's, and what one pass costs.
 *
 * - Nodes: the plain shared model's decoder (lm-shared-model.ts), the twin graph as served (decoderAsServed) and its
 *   decode graph.
 * - Exactness: max |Δlogit| of the decode graph against the graph as served at prefill on `--prompts` validation
 *   prompts of zoo/lm/data/prompts.jsonl, four rows each (one-hot, dense, all-zero mixes and the router's row); and,
 *   as the yardstick, how far the graph as served itself moves between each row run alone and the same row in the
 *   batch of four.
 * - Cost: one decode pass (one position per row, a past of 40) at batch 1 and 32, onnxruntime on one intra-op thread,
 *   this process's CPU time per pass, median over `--rounds` rounds that interleave the graphs (order reversed
 *   every other round); ratio = the graph's median ÷ the plain model's. Besides the three graphs, the merged decode
 *   graph (merged-decode-graph.ts) with one mix's merged matrices fed, and that mix baked into a session of its own
 *   (baked-mix-graph.ts), every row applying the mix: what a pinned mix's pass costs each way.
 *
 *   node --import tsx bench/decode-graph.ts [--prompts 150] [--rounds 40]
 * @module
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  bakedMixGraph,
  decodeGraph,
  decoderAsServed,
  LmProfile,
  MERGE_MIX,
  mergedDecodeGraph,
  withoutNewKv,
} from '@twinserve/gpu-runner/generate'
import { onnx } from '@twinserve/gpu-runner/onnx'
import { loadPackage } from '@twinserve/gpu-runner/package'
import { openSession, ort } from '@twinserve/gpu-runner/runtime'
import {
  checkContract,
  encodeControls,
  type RowControls,
} from '@twinserve/gpu-runner/twin-contract'
import { lmSharedModel } from './lm-shared-model.ts'
import { fmt, machine, markLoad, table } from './perf/report.ts'

const LM = join(import.meta.dirname, '../zoo/lm')
const { values } = parseArgs({
  options: {
    prompts: { type: 'string', default: '150' },
    rounds: { type: 'string', default: '40' },
  },
})
const PROMPTS = Number(values.prompts)
const ROUNDS = Number(values.rounds)
const PAST = 40
const PASSES = 20
const ROWS: RowControls[] = [
  { mixWeights: [0, 0, 1, 0, 0] },
  { mixWeights: [0.1, 0.3, 0.05, 0.4, 0.15] },
  { mixWeights: [0, 0, 0, 0, 0] },
  { useRouter: 1 },
]

const m = machine()
const pkg = await loadPackage(join(LM, 'package'))
const T = pkg.manifest.experts.length
const served = decoderAsServed(pkg.model)
const rewritten = decodeGraph(served)
if (!('bytes' in rewritten)) throw new Error(`no decode graph: ${rewritten.unavailable}`)
const plain = decoderAsServed(await lmSharedModel())
const opts = { provider: 'cpu' as const, threads: 1 }
// One pinned mix, merged (its matrices fed) and baked.
const PINNED = Float32Array.from([0.6, 0.4, 0, 0, 0])
const mergedGraph = mergedDecodeGraph(served, T)
if ('unavailable' in mergedGraph)
  throw new Error(`no merged decode graph: ${mergedGraph.unavailable}`)
const mergeSession = (await openSession(mergedGraph.merge, opts)).session
const mergedOut = await mergeSession.run({
  [MERGE_MIX]: new ort.Tensor('float32', PINNED, [1, T]),
})
const matrices = Object.fromEntries(
  mergedGraph.matrices.map((x) => [x.name, mergedOut[x.name] as ort.Tensor]),
)
const baked = bakedMixGraph(
  mergedGraph.decode,
  Object.fromEntries(Object.entries(matrices).map(([k, t]) => [k, t.data as Float32Array])),
  PINNED,
)
const graphs = { plain, served, decode: rewritten.bytes, merged: mergedGraph.decode, baked }
const nodes = (bytes: Uint8Array) => onnx.ModelProto.decode(bytes).graph?.node?.length ?? 0
const sessions = {
  plain: (await openSession(plain, opts)).session,
  served: (await openSession(served, opts)).session,
  decode: (await openSession(rewritten.bytes, opts)).session,
  merged: (await openSession(mergedGraph.decode, opts)).session,
  baked: (await openSession(baked, opts)).session,
}
const controls = checkContract(pkg.manifest, withoutNewKv(sessions.served), new Map())

// ---- Exactness at prefill.
const profile = await LmProfile.load(join(LM, 'models'))
const prompts = readFileSync(join(LM, 'data/prompts.jsonl'), 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l) as { split: string; prompt: string })
  .filter((p) => p.split === 'validation')
  .slice(0, PROMPTS)
  .map((p) => profile.encodePrompt(p.prompt))

function prefillFeeds(ids: number[], rows: RowControls[]): Record<string, ort.Tensor> {
  const B = rows.length
  const S = ids.length
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(rows.flatMap(() => ids.map(BigInt))), [
      B,
      S,
    ]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(B * S).fill(1n), [B, S]),
    position_ids: new ort.Tensor(
      'int64',
      BigInt64Array.from(rows.flatMap(() => ids.map((_, s) => BigInt(s)))),
      [B, S],
    ),
    ...encodeControls(rows, T, controls),
  }
  for (let l = 0; l < 3; l++)
    for (const kv of ['key', 'value'])
      feeds[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [
        B,
        4,
        0,
        32,
      ])
  return feeds
}
const logits = async (s: ort.InferenceSession, feeds: Record<string, ort.Tensor>) =>
  (await s.run(feeds, ['logits'])).logits?.data as Float32Array

let rewriteDiff = 0
let batchNoise = 0
let largest = 0
for (const ids of prompts) {
  const a = await logits(sessions.served, prefillFeeds(ids, ROWS))
  const b = await logits(sessions.decode, prefillFeeds(ids, ROWS))
  for (let i = 0; i < a.length; i++) {
    rewriteDiff = Math.max(rewriteDiff, Math.abs((a[i] as number) - (b[i] as number)))
    largest = Math.max(largest, Math.abs(a[i] as number))
  }
  const per = a.length / ROWS.length
  for (const [r, row] of ROWS.entries()) {
    const alone = await logits(sessions.served, prefillFeeds(ids, [row]))
    for (let i = 0; i < per; i++)
      batchNoise = Math.max(batchNoise, Math.abs((alone[i] as number) - (a[r * per + i] as number)))
  }
}
markLoad(m, 'exactness done')

// ---- Cost of one decode pass.
type GraphName = keyof typeof sessions
function decodeFeeds(B: number, name: GraphName): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor(
      'int64',
      BigInt64Array.from({ length: B }, (_, i) => BigInt(i * 7)),
      [B, 1],
    ),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(B * (PAST + 1)).fill(1n), [
      B,
      PAST + 1,
    ]),
    position_ids: new ort.Tensor('int64', new BigInt64Array(B).fill(BigInt(PAST)), [B, 1]),
  }
  if (name === 'served' || name === 'decode')
    Object.assign(
      feeds,
      encodeControls(
        Array.from({ length: B }, (_, i) => ({
          mixWeights: Array.from({ length: T }, (_, t) => (((i * 5 + t) * 13) % 7) / 20),
        })),
        T,
        controls,
      ),
    )
  if (name === 'merged')
    Object.assign(
      feeds,
      encodeControls(
        Array.from({ length: B }, () => ({ mixWeights: Array.from(PINNED) })),
        T,
        controls,
      ),
      matrices,
    )
  for (let l = 0; l < 3; l++)
    for (const kv of ['key', 'value'])
      feeds[`past_key_values.${l}.${kv}`] = new ort.Tensor(
        'float32',
        new Float32Array(B * 4 * PAST * 32).fill(0.01),
        [B, 4, PAST, 32],
      )
  return feeds
}
const names = Object.keys(sessions) as GraphName[]
const cost = new Map<string, number[]>()
for (const B of [1, 32])
  for (let r = 0; r < ROUNDS; r++)
    for (const name of r % 2 === 0 ? names : [...names].reverse()) {
      const s = sessions[name]
      const feeds = decodeFeeds(B, name)
      const fetches = s.outputNames.filter((o) => o === 'logits' || o.startsWith('new_key_values'))
      for (let i = 0; i < 3; i++) await s.run(feeds, fetches)
      const cpu0 = process.cpuUsage()
      for (let i = 0; i < PASSES; i++) await s.run(feeds, fetches)
      const cpu = process.cpuUsage(cpu0)
      const key = `${name}|${B}`
      cost.set(key, [...(cost.get(key) ?? []), (cpu.user + cpu.system) / 1000 / PASSES])
    }
markLoad(m, 'cost done')
const median = (v: readonly number[]) => [...v].sort((a, b) => a - b)[v.length >> 1] ?? Number.NaN
const ms = (name: string, B: number) => median(cost.get(`${name}|${B}`) ?? [])

console.log(
  [
    `Decode graph on zoo/lm/package (\`node --import tsx bench/decode-graph.ts --prompts ${PROMPTS} --rounds ${ROUNDS}\`): ${rewritten.foldedScales} corrections with σ folded, ${rewritten.joinedVectors} vector deltas in one product carrying ${rewritten.foldedBases} shared biases and LayerNorms.`,
    '',
    table(
      [
        'graph',
        'nodes',
        'B = 1 CPU ms per pass',
        'ratio to plain',
        'B = 32 CPU ms per pass',
        'ratio to plain',
      ],
      names.map((name) => [
        {
          plain: 'plain shared model',
          served: 'twin, graph as served',
          decode: 'twin, decode graph',
          merged: 'twin, one mix merged (matrices fed)',
          baked: 'twin, one mix baked',
        }[name],
        String(nodes(graphs[name])),
        fmt(ms(name, 1), 3),
        `${(ms(name, 1) / ms('plain', 1)).toFixed(2)}×`,
        fmt(ms(name, 32), 3),
        `${(ms(name, 32) / ms('plain', 32)).toFixed(2)}×`,
      ]),
    ),
    '',
    `Exactness at prefill, ${prompts.length} validation prompts × ${ROWS.length} rows (one-hot, dense, zero, router), |logit| up to ${fmt(largest, 1)}: decode graph vs graph as served max |Δlogit| ${rewriteDiff.toExponential(2)}; the graph as served itself, each row alone vs in the batch of ${ROWS.length}: ${batchNoise.toExponential(2)}.`,
    '',
    `Cost: one decode pass, past ${PAST}, onnxruntime on 1 intra-op thread, CPU time of this process per pass, median over ${ROUNDS} interleaved rounds of ${PASSES} passes. Machine: ${m.nproc} cores, ${m.cpu}; Node ${m.node}; onnxruntime-node ${m.ort}; load average ${fmt(m.loadStart, 1)} at start, ${m.loads.map((l) => `${l.phase} ${fmt(l.load, 1)}`).join(', ')}; ${new Date().toISOString()}.`,
  ].join('\n'),
)
