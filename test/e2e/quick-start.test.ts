/**
 * `npm start` as a user runs it: the start script as a real process (gateway under wrangler dev + the runner on
 * the bundled demo package, the text twin package and the LM twin package generating text), on free ports and a
 * temporary state directory. The printed curls (the streaming chat completion's too) are run as printed
 * (through sh, from the repository root), Ctrl-C is a SIGINT to the script's process group as a terminal sends
 * it, and a second start on the same state reuses the secrets and the dev key.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO_ROOT } from '@twinserve/gateway/dev'
import {
  ChatCompletionChunkSchema,
  InferenceRequestSchema,
  InferenceResponseSchema,
} from '@twinserve/shared'
import {
  FASHION_CLASSES,
  fashionMnistDir,
  IMAGE_PIXELS,
  loadFashionMnist,
} from '@twinserve/zoo/fashion'
import { afterAll, describe, expect, it } from 'vitest'
import {
  type QuickStartReady,
  QuickStartReadySchema,
  READY_PREFIX,
} from '../../scripts/quick-start-ready.ts'

const exec = promisify(execFile)
const EXAMPLE = join(REPO_ROOT, 'docs', 'examples', 'ankle-boot.json')
const ANKLE_BOOT = FASHION_CLASSES.indexOf('Ankle boot')
const stateDir = await mkdtemp(join(tmpdir(), 'twinserve-quick-start-'))

interface Started {
  child: ChildProcess
  output: () => string
  ready: QuickStartReady
  exited: Promise<number | null>
}

const running: ChildProcess[] = []
afterAll(async () => {
  for (const c of running) if (c.exitCode === null && c.pid) process.kill(-c.pid, 'SIGKILL')
  await rm(stateDir, { recursive: true, force: true })
})

async function npmStart(): Promise<Started> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts/start.ts')], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      GATEWAY_PORT: '0',
      RUNNER_PORT: '0',
      RUNNER_PROVIDER: 'cpu',
      TWINSERVE_STATE_DIR: stateDir,
      INIT_CWD: REPO_ROOT,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, like a shell job: the test's Ctrl-C goes to the whole group.
    detached: true,
  })
  running.push(child)
  let out = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d
  })
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    out += d
  })
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  const deadline = Date.now() + 90_000
  for (;;) {
    const line = out.split('\n').find((l) => l.startsWith(READY_PREFIX))
    if (line)
      return {
        child,
        output: () => out,
        ready: QuickStartReadySchema.parse(JSON.parse(line.slice(READY_PREFIX.length))),
        exited,
      }
    if (child.exitCode !== null) throw new Error(`npm start exited (${child.exitCode}):\n${out}`)
    if (Date.now() > deadline) throw new Error(`npm start printed no ready line in 90 s:\n${out}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Ctrl-C in a terminal: SIGINT to the foreground process group. */
async function ctrlC(s: Started): Promise<number | null> {
  if (s.child.pid) process.kill(-s.child.pid, 'SIGINT')
  return s.exited
}

async function refused(url: string): Promise<boolean> {
  return fetch(url).then(
    () => false,
    () => true,
  )
}

describe('npm start', () => {
  it('prints a request with a real input: Fashion-MNIST test image 0 (an ankle boot)', async () => {
    const example = InferenceRequestSchema.parse(JSON.parse(await readFile(EXAMPLE, 'utf8')))
    const pixels = example.inputs[0]?.data ?? []
    expect(example.inputs[0]?.shape).toEqual([1, IMAGE_PIXELS])
    if (!existsSync(join(fashionMnistDir(), 't10k-images-idx3-ubyte.gz'))) {
      // npm test's first step (scripts/prepare-machine.ts) installs Debian's dataset-fashion-mnist; a bare vitest run
      // without it can check only the shape.
      console.warn(`${fashionMnistDir()} missing: the example is not compared with the dataset`)
      return
    }
    const { images, labels } = loadFashionMnist('test')
    expect(labels[0]).toBe(ANKLE_BOOT)
    // Grey level / 255 as the zoo trained on, rounded to 4 decimals in the file.
    pixels.forEach((v, i) => {
      expect(Math.abs(Number(v) - (images[i] ?? Number.NaN) / 255)).toBeLessThan(5e-5)
    })
  })

  it('serves the demo model through the gateway, prints a working curl, and stops cleanly on Ctrl-C', async () => {
    const first = await npmStart()
    const { ready } = first
    expect(ready.model).toBe('fashion-twin')
    // The state stays under the given directory, secrets and key readable by the owner only.
    expect((await stat(join(stateDir, 'secrets.json'))).mode & 0o077).toBe(0)
    expect((await stat(join(stateDir, 'dev-key.json'))).mode & 0o077).toBe(0)

    // The curl as printed for people, run by a shell from the repository root.
    expect(first.output()).toContain(`    ${ready.curl}\n`)
    expect(ready.curl).toContain(`${ready.gateway_url}/v2/models/fashion-twin/infer`)
    expect(ready.curl).toContain('-d @docs/examples/ankle-boot.json')
    expect(ready.request_file).toBe(EXAMPLE)
    const { stdout } = await exec('sh', ['-c', ready.curl], { cwd: REPO_ROOT })
    const answer = InferenceResponseSchema.parse(JSON.parse(stdout))
    expect(answer.model_name).toBe('fashion-twin')
    expect(answer.id).toBe('ankle-boot')
    const logits = answer.outputs.find((o) => o.name === 'logits')?.data as number[]
    expect(logits).toHaveLength(10)
    // The twin model classifies the image as what it shows.
    expect(logits.indexOf(Math.max(...logits))).toBe(ANKLE_BOOT)

    // It went through the gateway to the registered runner, which verified the gateway's signature.
    const viaGateway = await fetch(`${ready.gateway_url}/v2/models/fashion-twin/infer`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ready.key}`, 'content-type': 'application/json' },
      body: await readFile(ready.request_file, 'utf8'),
    })
    expect(viaGateway.status).toBe(200)
    expect(viaGateway.headers.get('x-twinserve-runner')).toBe('local-demo')
    await viaGateway.body?.cancel()
    const unsigned = await fetch(`${ready.runner_url}/v2/models/fashion-twin/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: await readFile(ready.request_file, 'utf8'),
    })
    expect(unsigned.status).toBe(401)
    await unsigned.body?.cancel()

    // The text twin beside it (issue #13): its printed curl sends a sentence as V2 BYTES and gets its logits.
    expect(ready.text_model).toBe('text-twin')
    expect(first.output()).toContain(`    ${ready.text_curl}\n`)
    expect(ready.text_curl).toContain(`${ready.gateway_url}/v2/models/text-twin/infer`)
    expect(ready.text_curl).toContain('Congratulations, you won a free cruise')
    const text = await exec('sh', ['-c', ready.text_curl], { cwd: REPO_ROOT })
    const textAnswer = InferenceResponseSchema.parse(JSON.parse(text.stdout))
    expect(textAnswer.model_name).toBe('text-twin')
    // Text in, label out: the top class of the routed task, as "score:index:label".
    const top = textAnswer.outputs.find((o) => o.name === 'logits')
    expect(top?.datatype).toBe('BYTES')
    expect(top?.shape).toEqual([1, 1])
    expect(String(top?.data?.[0])).toMatch(/^-?\d+\.\d{6}:\d:[a-z0-9-]+$/)
    expect(textAnswer.outputs.find((o) => o.name === 'expert_weights')?.shape).toEqual([1, 6])

    // The LM twin (issue #14): the printed curl streams a chat completion through the gateway as server-sent
    // chunks, the first naming the mix the router chose from the prompt.
    expect(ready.lm_model).toBe('lm-twin')
    expect(first.output()).toContain(`    ${ready.chat_curl}\n`)
    expect(ready.chat_curl).toContain(`${ready.gateway_url}/v1/chat/completions`)
    expect(ready.chat_curl).toContain('"stream":true')
    const chat = await exec('sh', ['-c', ready.chat_curl], { cwd: REPO_ROOT })
    const events = chat.stdout.split('\n\n').filter((e) => e.startsWith('data: '))
    expect(events.at(-1)).toBe('data: [DONE]')
    const chunks = events
      .slice(0, -1)
      .map((e) => ChatCompletionChunkSchema.parse(JSON.parse(e.slice(6))))
    expect(chunks.length).toBeGreaterThan(2)
    expect(Object.keys(chunks[0]?.twinserve?.expert_weights ?? {})).toHaveLength(5)
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('').length).toBeGreaterThan(0)

    expect(await ctrlC(first)).toBe(0)
    const out = first.output()
    // The runner drained and deregistered before the gateway stopped, then both processes are gone.
    expect(out.indexOf('"msg":"deregistered from the gateway"')).toBeGreaterThan(
      out.indexOf('SIGINT received'),
    )
    expect(out).toContain('"msg":"stopped","drained":true')
    expect(out.trimEnd().endsWith('twinserve: stopped')).toBe(true)
    expect(await refused(`${ready.gateway_url}/v2/health/live`)).toBe(true)
    expect(await refused(`${ready.runner_url}/v2/health/live`)).toBe(true)

    // A second start on the same state: same secrets, and the dev key (kept in the local D1) still works.
    const secrets = await readFile(join(stateDir, 'secrets.json'), 'utf8')
    const second = await npmStart()
    expect(second.ready.key).toBe(ready.key)
    expect(await readFile(join(stateDir, 'secrets.json'), 'utf8')).toBe(secrets)
    const again = await exec('sh', ['-c', second.ready.curl], { cwd: REPO_ROOT })
    expect(InferenceResponseSchema.parse(JSON.parse(again.stdout)).model_name).toBe('fashion-twin')
    // SIGTERM (a process manager) stops it as cleanly as Ctrl-C.
    second.child.kill('SIGTERM')
    expect(await second.exited).toBe(0)
    expect(second.output()).toContain('"msg":"deregistered from the gateway"')
  }, 180_000)
})
