/**
 * `npm start`: Twinserve on this machine — the gateway Worker in workerd (`wrangler dev`, local D1 with the
 * migrations applied, Durable Objects) and one runner serving the bundled twin packages, registered with it: the
 * Fashion-MNIST demo (zoo/fashion/package), the text twin (zoo/text/package, raw text in) and the LM twin
 * (zoo/lm/package, generating text with `--generation`). Both share a generated signing secret; a dev API key is
 * created through the admin API; then ready-to-paste curls are printed: one real Fashion-MNIST test image
 * (docs/examples/ankle-boot.json), one sentence for the text twin and a streamed chat completion from the LM twin.
 *
 * State (local D1 and Durable Objects, the generated secrets, the dev key) lives in `.twinserve/` (git-ignored),
 * so keys survive restarts; delete the folder to start over. Ctrl-C or SIGTERM: the runner drains what it
 * accepted and deregisters, then the gateway stops; a second signal kills both at once.
 *
 * Environment: GATEWAY_PORT (default 8787; 0 = any free port), RUNNER_PORT (default 0 = any free port, so it
 * never collides with `npm run serve:demo` on 8790), RUNNER_PROVIDER (auto|cuda|cpu, default auto),
 * TWINSERVE_STATE_DIR (default .twinserve), TWINSERVE_LOG_LEVEL (the gateway's and runner's, default info).
 *
 * Machine-readable: once serving, one line `twinserve-ready {json}` on stdout (scripts/quick-start-ready.ts).
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { isAbsolute, join, relative } from 'node:path'
import {
  applyLocalMigrations,
  freePort,
  type LocalGateway,
  REPO_ROOT,
  startLocalGateway,
} from '@twinserve/gateway/dev'
import { CreatedApiKeySchema } from '@twinserve/shared'
import { z } from 'zod'
import { type QuickStartReady, READY_PREFIX } from './quick-start-ready.ts'

const DEMO_PACKAGE = join(REPO_ROOT, 'zoo', 'fashion', 'package')
/** The text twin package: six text classifiers, a tokenizer, raw UTF-8 text in (issue #13). */
const TEXT_PACKAGE = join(REPO_ROOT, 'zoo', 'text', 'package')
/** The sentence the printed text curl sends. */
const TEXT_SENTENCE = 'Congratulations, you won a free cruise'
/** The LM twin package (issue 14) and the directory with its tokenizer and chat template (`--generation`). */
const LM_PACKAGE = join(REPO_ROOT, 'zoo', 'lm', 'package')
const LM_MODELS = join(REPO_ROOT, 'zoo', 'lm', 'models')
/** The prompt the printed streaming curl sends. */
const CHAT_PROMPT = 'The proof of the pudding'
const TWINSERVE_BIN = join(REPO_ROOT, 'gpu-runner', 'bin', 'twinserve.mjs')
const RUNNER_ID = 'local-demo'
/** One Fashion-MNIST test image (an ankle boot) as a V2 request; docs/user-guide.md uses it too. */
const DEMO_REQUEST_FILE = join(REPO_ROOT, 'docs', 'examples', 'ankle-boot.json')

const StoredSecretsSchema = z.object({
  RUNNER_SIGNING_SECRET: z.string().min(16),
  ADMIN_BOOTSTRAP_SECRET: z.string().min(16),
})
const StoredKeySchema = z.object({ id: z.string(), key: z.string() })

function port(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new Error(`${name}=${raw}: expected a port number 0..65535 (0 = any free port)`)
  return n
}

/** Writes via a temp file and rename, so an interrupted start never leaves a half-written state file. */
async function writePrivate(path: string, data: unknown): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 })
  await rename(tmp, path)
}

async function readJson<T>(path: string, schema: z.ZodType<T>): Promise<T | undefined> {
  try {
    const parsed = schema.safeParse(JSON.parse(await readFile(path, 'utf8')))
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}

/** The secrets of an earlier start, or new ones (32 random bytes each). */
async function secrets(stateDir: string): Promise<z.infer<typeof StoredSecretsSchema>> {
  const path = join(stateDir, 'secrets.json')
  const stored = await readJson(path, StoredSecretsSchema)
  if (stored) return stored
  const fresh = {
    RUNNER_SIGNING_SECRET: randomBytes(32).toString('hex'),
    ADMIN_BOOTSTRAP_SECRET: randomBytes(32).toString('hex'),
  }
  await writePrivate(path, fresh)
  return fresh
}

/** Prefixes each output line with the process it came from. */
function relay(label: string): (chunk: string) => void {
  let partial = ''
  return (chunk) => {
    partial += chunk
    const lines = partial.split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) if (line.trim()) process.stdout.write(`${label} | ${line}\n`)
  }
}

interface Runner {
  child: ChildProcess
  url: Promise<string>
  exited: Promise<number | null>
}

function startRunner(
  gatewayUrl: string,
  secret: string,
  runnerPort: number,
  logLevel: string,
  lmModel: string,
) {
  const child = spawn(
    process.execPath,
    [
      TWINSERVE_BIN,
      'serve',
      '--package',
      DEMO_PACKAGE,
      '--package',
      TEXT_PACKAGE,
      '--package',
      LM_PACKAGE,
      '--generation',
      `${lmModel}=${LM_MODELS}`,
      '--gateway-url',
      gatewayUrl,
      '--port',
      String(runnerPort),
      '--runner-id',
      RUNNER_ID,
      '--provider',
      process.env.RUNNER_PROVIDER ?? 'auto',
      '--log-level',
      logLevel,
    ],
    {
      env: { ...process.env, RUNNER_SIGNING_SECRET: secret },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Own process group: Ctrl-C reaches only this script, which drains the runner before stopping the gateway.
      detached: true,
    },
  )
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  const show = relay('runner ')
  const url = new Promise<string>((resolve, reject) => {
    let partial = ''
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => {
      show(chunk)
      partial += chunk
      const lines = partial.split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) {
        try {
          const l = JSON.parse(line) as { msg?: unknown; url?: unknown }
          if (l.msg === 'listening' && typeof l.url === 'string') resolve(l.url)
        } catch {
          // Not a JSON log line.
        }
      }
    })
    void exited.then((code) => reject(new Error(`the runner exited (${code}) before listening`)))
  })
  // Keep the promise from being reported as unhandled when the runner dies after listening.
  url.catch(() => undefined)
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', relay('runner '))
  return { child, url, exited } satisfies Runner
}

async function devKey(stateDir: string, gw: LocalGateway, admin: string, model: string) {
  const path = join(stateDir, 'dev-key.json')
  const stored = await readJson(path, StoredKeySchema)
  if (stored) {
    // Still valid (not revoked, state not wiped)? Auth answers before readiness is looked at.
    const probe = await fetch(`${gw.url}/v2/models/${model}/ready`, {
      headers: { authorization: `Bearer ${stored.key}` },
    })
    await probe.body?.cancel()
    if (probe.status === 200 || probe.status === 503) return stored
  }
  const res = await fetch(`${gw.url}/admin/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      tenant: 'dev',
      name: 'npm start',
      scopes: ['infer', 'admin'],
      models: ['*'],
    }),
  })
  if (res.status !== 201) throw new Error(`creating the dev key: ${res.status} ${await res.text()}`)
  const created = CreatedApiKeySchema.parse(await res.json())
  const key = { id: created.id, key: created.key }
  await writePrivate(path, key)
  return key
}

async function waitReady(gw: LocalGateway, key: string, model: string, runner: Runner) {
  let dead = false
  void runner.exited.then(() => {
    dead = true
  })
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline && !dead) {
    const res = await fetch(`${gw.url}/v2/models/${model}/ready`, {
      headers: { authorization: `Bearer ${key}` },
    })
    await res.body?.cancel()
    if (res.status === 200) return
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(
    dead ? 'the runner exited before registering' : `model ${model} not ready within 60 s`,
  )
}

/** Single-quotes for sh. */
function shQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
}

/** What is running, for the shutdown path (signals, failures, a child that dies). */
const procs: { gateway?: Promise<LocalGateway | undefined>; runner?: Runner } = {}
let stopping = false

async function shutdown(code: number, why: string): Promise<void> {
  if (stopping) return
  stopping = true
  console.log(`twinserve: ${why}; stopping (the runner drains first, then the gateway)`)
  const { runner } = procs
  if (runner && runner.child.exitCode === null && runner.child.signalCode === null) {
    runner.child.kill('SIGTERM')
    const rc = await runner.exited
    if (rc !== 0 && code === 0) code = 1
  }
  // A gateway still starting is awaited, then stopped: wrangler runs in its own group and would outlive us.
  const gw = await procs.gateway
  await gw?.stop()
  console.log('twinserve: stopped')
  process.exit(code)
}

let signals = 0
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    signals++
    if (signals === 1) void shutdown(0, `${sig} received`)
    else {
      console.log(`twinserve: second ${sig}: killing both`)
      process.exit(130) // the exit handler below kills the children
    }
  })
let gatewayProcess: ChildProcess | undefined
// Whatever ends this process, its children do not outlive it.
process.on('exit', () => {
  for (const c of [procs.runner?.child, gatewayProcess])
    if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
})

async function main(): Promise<void> {
  const stateDir = process.env.TWINSERVE_STATE_DIR || join(REPO_ROOT, '.twinserve')
  const logLevel = process.env.TWINSERVE_LOG_LEVEL || 'info'
  const gatewayPort = port('GATEWAY_PORT', 8787) || (await freePort())
  const runnerPort = port('RUNNER_PORT', 0)
  const modelName = async (dir: string) =>
    (JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { name: string }).name
  const model = await modelName(DEMO_PACKAGE)
  const textModel = await modelName(TEXT_PACKAGE)
  const lmModel = await modelName(LM_PACKAGE)
  await mkdir(stateDir, { recursive: true, mode: 0o700 })
  // Inside the repository relative to it (.twinserve), elsewhere absolute.
  const inRepo = relative(REPO_ROOT, stateDir)
  const shownState = inRepo && !inRepo.startsWith('..') && !isAbsolute(inRepo) ? inRepo : stateDir
  const persistTo = join(stateDir, 'wrangler')
  const secret = await secrets(stateDir)

  console.log(`twinserve: state in ${shownState}; applying D1 migrations`)
  await applyLocalMigrations({ persistTo })
  if (stopping) return
  const starting = startLocalGateway({
    persistTo,
    port: gatewayPort,
    vars: { ...secret, LOG_LEVEL: logLevel },
    onOutput: relay('gateway'),
    detached: true,
    startTimeoutMs: 60_000,
  })
  procs.gateway = starting.catch(() => undefined)
  const gw = await starting
  gatewayProcess = gw.process
  if (stopping) return
  void new Promise((r) => gw.process.once('exit', r)).then(() =>
    shutdown(1, 'the gateway exited unexpectedly'),
  )
  console.log(
    `twinserve: gateway on ${gw.url}; starting the runner on ${DEMO_PACKAGE}, ${TEXT_PACKAGE} and ${LM_PACKAGE}`,
  )
  const runner = startRunner(gw.url, secret.RUNNER_SIGNING_SECRET, runnerPort, logLevel, lmModel)
  procs.runner = runner
  void runner.exited.then((rc) => shutdown(1, `the runner exited unexpectedly (${rc})`))
  const runnerUrl = await runner.url
  const key = await devKey(stateDir, gw, secret.ADMIN_BOOTSTRAP_SECRET, model)
  await waitReady(gw, key.key, model, runner)
  await waitReady(gw, key.key, textModel, runner)
  await waitReady(gw, key.key, lmModel, runner)
  if (stopping) return

  // The path as the person who typed `npm start` sees it (npm runs scripts from the root, INIT_CWD is theirs).
  const from = process.env.INIT_CWD || process.cwd()
  const requestFile = relative(from, DEMO_REQUEST_FILE) || DEMO_REQUEST_FILE
  const curl = [
    'curl -s',
    shQuote(`${gw.url}/v2/models/${model}/infer`),
    `-H ${shQuote(`authorization: Bearer ${key.key}`)}`,
    `-H ${shQuote('content-type: application/json')}`,
    `-d ${shQuote(`@${requestFile}`)}`,
  ].join(' ')
  // The classification extension answers the top class as "score:index:label", the label from the routed task.
  const textBody = {
    inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], data: [TEXT_SENTENCE] }],
    outputs: [{ name: 'logits', parameters: { classification: 1 } }, { name: 'expert_weights' }],
  }
  const textCurl = [
    'curl -s',
    shQuote(`${gw.url}/v2/models/${textModel}/infer`),
    `-H ${shQuote(`authorization: Bearer ${key.key}`)}`,
    `-H ${shQuote('content-type: application/json')}`,
    `-d ${shQuote(JSON.stringify(textBody))}`,
  ].join(' ')
  // Streamed (-N: curl passes each server-sent event on as it comes); the router picks the mix from the prompt.
  const chatBody = {
    model: lmModel,
    messages: [{ role: 'user', content: CHAT_PROMPT }],
    max_tokens: 24,
    stream: true,
  }
  const chatCurl = [
    'curl -sN',
    shQuote(`${gw.url}/v1/chat/completions`),
    `-H ${shQuote(`authorization: Bearer ${key.key}`)}`,
    `-H ${shQuote('content-type: application/json')}`,
    `-d ${shQuote(JSON.stringify(chatBody))}`,
  ].join(' ')
  const ready: QuickStartReady = {
    gateway_url: gw.url,
    runner_url: runnerUrl,
    model,
    key: key.key,
    request_file: DEMO_REQUEST_FILE,
    curl,
    text_model: textModel,
    text_curl: textCurl,
    lm_model: lmModel,
    chat_curl: chatCurl,
    state_dir: stateDir,
  }
  console.log(
    [
      '',
      `twinserve: ready — gateway ${gw.url}, runner ${RUNNER_ID} at ${runnerUrl} serving '${model}', '${textModel}' and '${lmModel}'`,
      `  dev API key (scopes infer + admin, all models; saved in ${join(shownState, 'dev-key.json')}):`,
      `    ${key.key}`,
      '  classify one Fashion-MNIST test image (an ankle boot) through the gateway:',
      `    ${curl}`,
      `  classify a sentence with the text twin (its router picks one of six text tasks; logits + expert_weights):`,
      `    ${textCurl}`,
      `  stream a chat completion from the LM twin (OpenAI API; add "twinserve": {"experts": {...}} to set the mix):`,
      `    ${chatCurl}`,
      `  runners and metrics: curl -s ${gw.url}/admin/runners -H ${shQuote(`authorization: Bearer ${key.key}`)}`,
      '  Ctrl-C stops both (the runner drains first).',
      '',
    ].join('\n'),
  )
  console.log(`${READY_PREFIX}${JSON.stringify(ready)}`)
}

main().catch((err: unknown) =>
  shutdown(1, `npm start failed: ${err instanceof Error ? err.message : String(err)}`),
)
