/**
 * Why the runner turns onnxruntime's thread spinning off (gpu-runner/src/runtime/ort-session.ts): two sessions in
 * one process, run one after the other as a runner serving several variants does, with intra-op threads that
 * spin-wait between runs (onnxruntime's default) and with threads that yield. Session A's latency is measured alone
 * and alternating with session B, for each setting, in interleaved rounds so both settings see the same load.
 * Each setting is measured with the sessions on the event loop and, as the runner opens them since issue #17, each
 * in a thread of its own (gpu-runner/src/runtime/threaded-session.ts): their intra-op pools still share the cores.
 *
 * Model: a stack of 8 MatMul [768×768] + Relu layers on X [1, 32, 768] (0.3 GFLOP per run), random weights; B is the
 * same graph with other weights. Threads: all cores (the runner's default).
 *
 *   npm run bench:spinning                  # writes the bench:spinning section of bench/RESULTS.md
 *   npm run bench:spinning -- --no-write    # prints it only
 * @module
 */
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { GraphBuilder } from '@twinserve/gpu-runner/onnx'
import { openSession, openThreadedSession, ort } from '@twinserve/gpu-runner/runtime'
import { fmt, machine, markLoad, summarize, table, writeSection } from './perf/report.ts'

/** Layers of the stack, model width, tokens per run; timed runs per cell and round, untimed first runs, rounds. */
const [LAYERS, D, TOKENS, RUNS, WARMUP, ROUNDS] = [8, 768, 32, 200, 20, 3] as const

function linearStack(seed: number): Uint8Array {
  const g = new GraphBuilder('linear_stack').input('x', 'float', [1, TOKENS, D])
  let state = seed >>> 0 || 1
  const uniform = () => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return (state >>> 0) / 2 ** 32 - 0.5
  }
  let h = 'x'
  for (let l = 0; l < LAYERS; l++) {
    // Scaled so activations keep their size through the stack: uniform(−0.5, 0.5) has variance 1/12.
    const w = Float32Array.from({ length: D * D }, () => uniform() * Math.sqrt(12 / D))
    g.float(`w${l}`, w, [D, D])
    h = g.node('Relu', [g.node('MatMul', [h, `w${l}`])])
  }
  g.node('Identity', [h], { outputs: ['y'] })
  return g.output('y', 'float', [1, TOKENS, D]).build()
}

/** Milliseconds per timed run of A: alone, and with a run of B after each run of A. */
async function measure(
  spinning: boolean,
  threaded: boolean,
): Promise<{ alone: number[]; alternating: number[] }> {
  const threads = availableParallelism()
  const open = threaded ? openThreadedSession : openSession
  const [a, b] = await Promise.all(
    [1, 2].map(
      async (seed) =>
        (await open(linearStack(seed), { provider: 'cpu', threads, spinning })).session,
    ),
  )
  if (!a || !b) throw new Error('sessions did not open')
  const feeds = {
    x: new ort.Tensor(
      'float32',
      Float32Array.from({ length: TOKENS * D }, (_, i) => Math.sin(i)),
      [1, TOKENS, D],
    ),
  }
  const timed = async () => {
    const t0 = performance.now()
    await a.run(feeds)
    return performance.now() - t0
  }
  for (let i = 0; i < WARMUP; i++) await Promise.all([a.run(feeds), b.run(feeds)])
  const alone: number[] = []
  for (let i = 0; i < RUNS; i++) alone.push(await timed())
  const alternating: number[] = []
  for (let i = 0; i < RUNS; i++) {
    alternating.push(await timed())
    await b.run(feeds)
  }
  await Promise.all([a.release(), b.release()])
  return { alone, alternating }
}

const { values } = parseArgs({ options: { 'no-write': { type: 'boolean', default: false } } })
const m = machine()
const SETTINGS = [
  { key: 'on', threaded: false, label: 'spinning (onnxruntime default), on the event loop' },
  { key: 'off', threaded: false, label: 'yielding, on the event loop (the runner before #17)' },
  { key: 'on-thread', threaded: true, label: 'spinning, a thread per session' },
  { key: 'off-thread', threaded: true, label: 'yielding, a thread per session (the runner now)' },
] as const
const samples = new Map<string, { alone: number[]; alternating: number[] }>(
  SETTINGS.map((s) => [s.key, { alone: [], alternating: [] }]),
)
for (let round = 0; round < ROUNDS; round++)
  // Alternate the order, so drift in the machine's load hits every setting.
  for (const setting of round % 2 === 0 ? SETTINGS : [...SETTINGS].reverse()) {
    const r = await measure(setting.key.startsWith('on'), setting.threaded)
    samples.get(setting.key)?.alone.push(...r.alone)
    samples.get(setting.key)?.alternating.push(...r.alternating)
    console.error(`round ${round + 1}, ${setting.label}: done`)
  }
markLoad(m, 'end')

const p50 = (xs: number[]) => summarize(xs).p50
const rows = SETTINGS.map((setting) => {
  const s = samples.get(setting.key) ?? { alone: [], alternating: [] }
  const alone = p50(s.alone)
  const alternating = p50(s.alternating)
  return [setting.label, fmt(alone, 2), fmt(alternating, 2), `${fmt(alternating / alone, 2)}×`]
})
const md = [
  '## Thread spinning with several sessions in one process (`npm run bench:spinning`)',
  '',
  `- **Command:** \`npm run bench:spinning\` (bench/session-spinning.ts), ${new Date().toISOString().slice(0, 10)}.`,
  `- **Machine:** ${m.nproc} cores, ${m.cpu}, ${m.memGb} GB; Node ${m.node}; onnxruntime-node ${m.ort}; CPU provider, ${m.nproc} intra-op threads; load average ${fmt(m.loadStart, 1)} at start, ${fmt(m.loads.at(-1)?.load ?? Number.NaN, 1)} at the end.`,
  `- **Setup:** two sessions of a ${LAYERS}-layer MatMul [${D}×${D}] + Relu stack on X [1, ${TOKENS}, ${D}] (different weights); session A's run time, median of ${ROUNDS} × ${RUNS} runs per cell, alone and with one run of B after each run of A; ${ROUNDS} interleaved rounds.`,
  '',
  table(
    ['threads between runs', 'A alone, ms', 'A alternating with B, ms', 'alternating ÷ alone'],
    rows,
  ),
  '',
  'Spinning threads keep their cores busy for a while after each run, so whatever runs next on those cores (another session, or another process) waits for them. The runner serves several sessions in one process (variants, the twin graph, merged models), so it opens every session with threads that yield (gpu-runner/src/runtime/ort-session.ts). The rows with a thread per session open each session as the runner does since issue #17 (gpu-runner/src/runtime/threaded-session.ts): each keeps its own intra-op pool, and the pools share the same cores.',
].join('\n')
if (!values['no-write'])
  await writeSection(join(import.meta.dirname, 'RESULTS.md'), 'bench:spinning', md)
process.stdout.write(`${md}\n`)
