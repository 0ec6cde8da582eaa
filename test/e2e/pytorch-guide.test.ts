/**
 * The user guide's "Bring your PyTorch models" section (docs/user-guide.md, issue #13), run as written: its shell
 * blocks build docs/examples/pytorch/recipe.yaml with the real `twinserve` CLI (through npx, as a user types it),
 * start the real runner on loopback and send the curls. Each answer shown in a `text` block after a command must be
 * what the command printed (labels and names exactly, numbers to 1e-3), the one-hot mix must reproduce the expert's
 * own ONNX file in onnxruntime-node (relative error < 1e-3), and the blocks that are not run (the PyTorch code, the
 * recipe, the request) must be the committed files they show. No Python runs here: the exports are committed.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { ort } from '@twinserve/gpu-runner/runtime'
import { afterAll, describe, expect, it } from 'vitest'
import { docBlocks, docSection } from '../support/doc-blocks.ts'

const exec = promisify(execFile)
const REPO = fileURLToPath(new URL('../..', import.meta.url))
const GUIDE = 'docs/user-guide.md'
const SECTION = 'Bring your PyTorch models'
const EXAMPLE = join(REPO, 'docs/examples/pytorch')
/** The package directory and port the guide names; the test uses its own of each. */
const GUIDE_OUT = '/tmp/pytorch-twin'
const GUIDE_PORT = 8790

const work = await mkdtemp(join(tmpdir(), 'twinserve-pytorch-guide-'))
let runner: ChildProcess | undefined
/** The exit code, or the signal that ended it. */
let runnerExited: Promise<number | string | null> | undefined
afterAll(async () => {
  // The runner was started in its own process group (npx → node): end that group, by its id only.
  if (runner?.pid !== undefined && runner.exitCode === null && runner.signalCode === null) {
    process.kill(-runner.pid, 'SIGTERM')
    await runnerExited
  }
  await rm(work, { recursive: true, force: true })
})

interface V2Output {
  name: string
  shape: number[]
  data: (number | string)[]
}
const outputsOf = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as V2Output)

/** max |a − b| / max |b|. */
function relErr(actual: readonly number[], expected: ArrayLike<number>): number {
  let diff = 0
  let scale = 0
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs((actual[i] as number) - Number(expected[i])))
    scale = Math.max(scale, Math.abs(Number(expected[i])))
  }
  return diff / scale
}

/**
 * An answer the guide shows against the one printed: same structure; strings equal (a classification string
 * `score:index:label` by index and label, its score to 1e-3); numbers to 1e-3 of the largest magnitude in their array.
 */
function expectSameAnswer(shown: unknown, got: unknown, path = '$'): void {
  if (Array.isArray(shown)) {
    expect(Array.isArray(got), path).toBe(true)
    const g = got as unknown[]
    expect(g.length, path).toBe(shown.length)
    const scale = Math.max(1, ...shown.map((x) => (typeof x === 'number' ? Math.abs(x) : 0)))
    shown.forEach((x, i) => {
      if (typeof x === 'number') {
        expect(typeof g[i], `${path}[${i}]`).toBe('number')
        expect(Math.abs((g[i] as number) - x), `${path}[${i}]`).toBeLessThan(1e-3 * scale)
      } else expectSameAnswer(x, g[i], `${path}[${i}]`)
    })
    return
  }
  if (typeof shown === 'string') {
    const m = /^(-?[\d.e+-]+):(\d+):(.*)$/.exec(shown)
    const n = typeof got === 'string' ? /^(-?[\d.e+-]+):(\d+):(.*)$/.exec(got) : null
    if (m && n) {
      expect([n[2], n[3]], path).toEqual([m[2], m[3]])
      expect(Math.abs(Number(n[1]) - Number(m[1])), path).toBeLessThan(
        1e-3 * Math.abs(Number(m[1])),
      )
    } else expect(got, path).toBe(shown)
    return
  }
  if (shown !== null && typeof shown === 'object') {
    expect(got !== null && typeof got === 'object', path).toBe(true)
    const g = got as Record<string, unknown>
    expect(Object.keys(g).sort(), path).toEqual(Object.keys(shown).sort())
    for (const [k, v] of Object.entries(shown)) expectSameAnswer(v, g[k], `${path}.${k}`)
    return
  }
  expect(got, path).toBe(shown)
}

const request = JSON.parse(readFileSync(join(EXAMPLE, 'request.json'), 'utf8')) as {
  inputs: { name: string; shape: number[]; data: number[] }[]
}

/** The expert's own ONNX file (as exported by PyTorch) on the guide's request, in onnxruntime-node. */
async function expertLogits(expert: string): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(join(EXAMPLE, 'experts', `${expert}.onnx`))
  try {
    const input = request.inputs[0] as { name: string; shape: number[]; data: number[] }
    const ids = new ort.Tensor('int64', BigInt64Array.from(input.data, BigInt), input.shape)
    const out = await session.run({ [input.name]: ids })
    return out.logits?.data as Float32Array
  } finally {
    await session.release()
  }
}

type Check =
  /** Not run: the block must be (lines of) a committed file. */
  | { file: (text: string) => void }
  /** Run with `sh -ec`; `check` gets its stdout. */
  | { run: (stdout: string) => void | Promise<void> }
  /** The long-running server: started in the background, awaited until it listens. */
  | { serve: true }

const srcLines = (file: string) =>
  new Set(
    readFileSync(join(EXAMPLE, file), 'utf8')
      .split('\n')
      .map((l) => l.trim()),
  )

/** Keyed by the start of the block's text; every block but the shown answers needs one, and every entry a block. */
const CHECKS: [string, Check][] = [
  [
    'class Encoder(nn.Module):',
    {
      file: (text) => {
        const lines = srcLines('make_models.py')
        const missing = text.split('\n').filter((l) => l.trim() && !lines.has(l.trim()))
        expect(missing, 'lines of the guide’s Python not in make_models.py').toEqual([])
      },
    },
  ],
  [
    '# The user guide',
    { file: (text) => expect(text).toBe(readFileSync(join(EXAMPLE, 'recipe.yaml'), 'utf8')) },
  ],
  ['{\n  "inputs"', { file: (text) => expect(JSON.parse(text)).toEqual(request) }],
  [
    'npx twinserve build docs/examples/pytorch/recipe.yaml',
    {
      run: (stdout) => {
        // The build's own verification: each one-hot mix against its expert's ONNX file.
        for (const expert of ['majority', 'last']) {
          const m = new RegExp(`one-hot '${expert}' vs expert\\s*\\|\\s*([\\d.e+-]+)`).exec(stdout)
          expect(Number(m?.[1]), `${expert}:\n${stdout}`).toBeLessThan(1e-4)
        }
        expect(stdout).toMatch(/^\| mlp +\| \S+ +\| 32 +\|.*\| 100\.0% +\|/m)
        // Every weight of the export carries exclusive knowledge; none is left at the shared merge.
        expect(stdout.match(/^\| \S+ +\| (matrix|vector) +\|/gm)).toHaveLength(16)
        expect(stdout).toMatch(/^\| pos\.weight +\| matrix /m)
        expect(stdout).not.toMatch(/shared only/)
      },
    },
  ],
  ['npx twinserve serve --package', { serve: true }],
  [
    'curl -s localhost:8790/v2/models/pytorch-twin |',
    { run: (out) => expect(JSON.parse(out)).toMatchObject({ experts: ['majority', 'last'] }) },
  ],
  [
    'jq \'.parameters = {"experts": {"last": 1}}\'',
    {
      run: async (out) => {
        const [logits, weights] = outputsOf(out)
        expect(weights).toEqual({ name: 'expert_weights', shape: [2, 2], data: [0, 1, 0, 1] })
        expect(logits?.shape).toEqual([2, 4])
        const own = await expertLogits('last')
        expect(relErr(logits?.data as number[], own)).toBeLessThan(1e-3)
        // A one-hot mix of the other expert is a different model: the check above can fail.
        expect(relErr(logits?.data as number[], await expertLogits('majority'))).toBeGreaterThan(
          0.1,
        )
      },
    },
  ],
  [
    'jq \'.outputs = [{"name": "logits", "parameters": {"classification": 1}}',
    {
      run: (out) => {
        const [labels, weights] = outputsOf(out)
        expect(labels?.data.map((s) => String(s).split(':').slice(1).join(':'))).toEqual([
          '3:12-15',
          '3:28-31',
        ])
        const w = weights?.data as number[]
        // Row 0 routed to majority, row 1 to last, each row's weights summing to 1.
        expect(w[0]).toBeGreaterThan(0.9)
        expect(w[3]).toBeGreaterThan(0.9)
        expect((w[0] as number) + (w[1] as number)).toBeCloseTo(1, 5)
      },
    },
  ],
]

describe(`${GUIDE}: "${SECTION}", run as written`, () => {
  it('runs every shell block against a real build and runner and checks what each shows', async () => {
    const blocks = docBlocks(docSection(readFileSync(join(REPO, GUIDE), 'utf8'), SECTION))
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' }
    const out = join(work, 'pytorch-twin')
    let port = 0
    const localize = (cmd: string) =>
      cmd
        .replaceAll(GUIDE_OUT, out)
        .replace(new RegExp(`localhost:${GUIDE_PORT}`, 'g'), `127.0.0.1:${port}`)
    const used = new Set<string>()
    let last: { command: string; stdout: string } | undefined
    for (const block of blocks) {
      if (block.lang === 'text') {
        // An answer the guide shows: the previous command's output.
        expect(last, `a shown answer without a command before it:\n${block.text}`).toBeDefined()
        const shown = block.text.trim().split('\n')
        const got = last?.stdout.trim().split('\n') ?? []
        expect(got.length, last?.command).toBe(shown.length)
        shown.forEach((line, i) => {
          expectSameAnswer(JSON.parse(line), JSON.parse(got[i] ?? 'null'))
        })
        continue
      }
      const entry = CHECKS.find(([start]) => block.text.startsWith(start))
      expect(entry, `no CHECKS entry for this block of ${GUIDE}:\n${block.text}`).toBeDefined()
      if (!entry) continue
      used.add(entry[0])
      const [, how] = entry
      if ('file' in how) how.file(block.text)
      else if ('serve' in how) {
        expect(block.text.trim()).toContain(`--port ${GUIDE_PORT}`)
        const command = `exec ${localize(block.text.trim()).replace(`--port ${GUIDE_PORT}`, '--port 0')} --threads 1`
        const child = spawn('sh', ['-c', command], {
          cwd: REPO,
          env,
          detached: true,
          stdio: ['ignore', 'pipe', 'pipe'],
        })
        runner = child
        runnerExited = new Promise((r) => child.on('exit', (code, signal) => r(code ?? signal)))
        let log = ''
        port = await new Promise<number>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`runner did not listen:\n${log}`)),
            20_000,
          )
          child.stderr?.on('data', (d: Buffer) => {
            log += d
          })
          child.stdout?.on('data', (d: Buffer) => {
            log += d
            const m = /"msg":"listening".*?"port":(\d+)/.exec(log)
            if (m) {
              clearTimeout(timer)
              resolve(Number(m[1]))
            }
          })
          child.on('exit', () => reject(new Error(`runner exited:\n${log}`)))
        })
      } else {
        const command = localize(block.text)
        const { stdout } = await exec('sh', ['-ec', command], { cwd: REPO, env, timeout: 20_000 })
        try {
          await how.run(stdout)
        } catch (err) {
          throw new Error(`${GUIDE} block printed:\n${stdout}\n${String(err)}`)
        }
        last = { command: block.text, stdout }
      }
    }
    expect(CHECKS.map(([k]) => k).filter((k) => !used.has(k))).toEqual([])
    // Ctrl-C, as the guide's reader ends it: npx passes the signal on and the runner drains and exits.
    if (runner?.pid !== undefined) process.kill(-runner.pid, 'SIGINT')
    expect(await runnerExited).toBeOneOf([0, 'SIGINT'])
  }, 30_000)
})
