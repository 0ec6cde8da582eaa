/**
 * The runner's configuration: command-line flags over environment variables over defaults, parsed by one zod
 * schema so that a bad value is refused at start with the flag (or variable) named, never discovered mid-request.
 *
 * `RUNNER_ENV` is the complete list of environment variables the runner reads; deployment manifests set exactly
 * these (infra's tests compare the two).
 * @module
 */
import { parseArgs } from 'node:util'
import { DEFAULT_RUNNER_GROUP, RunnerGroupSchema } from '@twinserve/shared'
import { z } from 'zod'

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max)

export const RunnerConfigSchema = z
  .strictObject({
    /** Twin package directories; each is one model, named by its manifest. */
    packages: z.array(z.string().min(1)).min(1, 'at least one --package <dir> is required'),
    host: z.string().min(1).default('127.0.0.1'),
    /** 0 picks a free port (tests); the chosen port is logged. */
    port: int(0, 65535).default(8790),
    provider: z.enum(['auto', 'cuda', 'cpu']).default('auto'),
    /** onnxruntime intra-op threads per session; default: onnxruntime's choice (all cores). */
    threads: int(1, 1024).optional(),
    /** Accept unsigned requests. Only for local use; never set it where the port is reachable by others. */
    insecureLocal: z.boolean().default(false),
    /** HMAC secret shared with the gateway (environment only: a flag would show in `ps`). */
    signingSecret: z.string().min(16, 'must be at least 16 characters').optional(),
    /** Gateway base URL; when set the runner registers, heartbeats and deregisters there. */
    gatewayUrl: z.url().optional(),
    /** URL the gateway should call this runner on; default http://<host>:<port>. */
    publicUrl: z.url().optional(),
    runnerId: z.string().min(1).max(128).optional(),
    /** Most rows one coalesced run may hold (a single larger request still runs, alone). */
    maxBatchSize: int(1, 65536).default(16),
    /**
     * How long the first request of a batch may wait for others to join. Default 0 (Triton's default too): an idle
     * runner starts at once, and batches still form from the requests that arrive while a run executes.
     */
    maxBatchWaitMs: int(0, 60_000).default(0),
    /** Requests waiting (not yet running) beyond which new ones get 503 + Retry-After. */
    maxQueue: int(1, 1_000_000).default(256),
    /** Runs executing at once; 1 suits one device (onnxruntime parallelises inside a run). */
    concurrency: int(1, 256).default(1),
    /**
     * Each onnxruntime session in a thread of its own (`on`), so that HTTP, health checks and batching go on while
     * a batch runs; `off` runs sessions on the event loop, as before issue #17 (benchmarks compare the two).
     */
    sessionThreads: z.enum(['on', 'off']).default('on'),
    /**
     * Nice steps the session threads, and the intra-op threads onnxruntime starts from them, run below the event
     * loop's thread (Linux, where nice is per thread; a no-op elsewhere, said in the start log). When a batch's
     * threads fill the cores, the event loop's thread preempts them as soon as a request or health check arrives
     * instead of waiting for its turn. 0 runs them at the event loop's priority.
     */
    sessionNice: int(0, 19).default(10),
    /** Per-request deadline, from arrival to response (a request may ask for less). */
    requestTimeoutMs: int(1, 3_600_000).default(30_000),
    maxBodyBytes: int(1024, 2 ** 31).default(32 * 1024 * 1024),
    /** The whole request body must arrive within this (408 otherwise): a trickled body never holds a request. */
    bodyTimeoutMs: int(1, 3_600_000).default(30_000),
    /**
     * How long an idle keep-alive connection stays open. Longer than every client's idle timeout (workerd's
     * outbound pool, an ingress's upstream keep-alive), so that a client never sends on a connection the runner
     * is closing ("Network connection lost"); Node's default is 5 s, the same as workerd's.
     */
    keepAliveTimeoutMs: int(1000, 3_600_000).default(75_000),
    /** Materialised merges kept (LRU), bounded by count and by size. */
    mergeCacheEntries: int(0, 100_000).default(8),
    mergeCacheMb: int(0, 1_048_576).default(2048),
    /**
     * Cache entries one tenant's recipes may hold; beyond it the tenant's own least recent entry goes, so a
     * tenant cycling recipes cannot push out everyone else's. Default: half of --merge-cache-entries.
     */
    mergeCacheEntriesPerTenant: int(1, 100_000).optional(),
    /** New (uncached) materialised merges a tenant may cause per minute (429 beyond); 0: no quota. */
    mergeQuotaPerMinute: int(0, 1_000_000).default(30),
    /** On SIGTERM, how long to wait for accepted requests before giving up on them. */
    drainTimeoutMs: int(0, 3_600_000).default(120_000),
    logLevel: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
    /**
     * Also serve KServe's gRPC inference service on this port (0: a free one); off when unset. It needs mutual
     * TLS (the three paths below) or --insecure-local: gRPC cannot carry the gateway's signature.
     */
    grpcPort: int(0, 65535).optional(),
    /** PEM certificate chain the gRPC port presents. */
    grpcTlsCert: z.string().min(1).optional(),
    /** PEM private key of that certificate. */
    grpcTlsKey: z.string().min(1).optional(),
    /** PEM CA bundle; gRPC clients must present a certificate it signed. */
    grpcTlsClientCa: z.string().min(1).optional(),
    /**
     * Text generation (`/v1/*`, `/v2/models/{m}/generate`): `<model>=<dir>` per decoder package, the directory
     * holding its tokenizer and zoo.json (generate/lm-profile.ts), e.g. `lm-twin=zoo/lm/models`.
     */
    generation: z.array(z.string().regex(/^[^=]+=.+$/, 'must be <model>=<dir>')).default([]),
    /** Sequences generating at once (all models); beyond it, 503 + Retry-After. */
    maxSequences: int(1, 65536).default(64),
    /** KV-cache memory the admitted sequences may reserve (prompt + max_tokens each), per model. */
    kvCacheMb: int(1, 1_048_576).default(256),
    /** Prompt tokens prefilled per engine step, so a long prompt never stalls running sequences for long. */
    prefillTokensPerStep: int(1, 1_000_000).default(512),
    /**
     * Sessions per generating model with a hot mix baked in (generate/baked-mix-graph.ts), each about one more copy
     * of the model in memory; 0 bakes none (a pinned mix then decodes with its merged matrices fed). The default
     * is the engine's own, BAKED_MIXES (config.test.ts checks they agree).
     */
    bakedMixes: int(0, 16).default(1),
    /** Hot loading (`POST /v2/repository/models/{m}/load`) reads packages under this directory only; unset: off. */
    repositoryRoot: z.string().min(1).optional(),
    /**
     * Memory the loaded packages may take, estimated from their files; a hot load beyond it is refused (507).
     * Unset: only the memory the OS has available is checked.
     */
    memoryLimitMb: int(1, 16_777_216).optional(),
    /**
     * Routing drift (total variation, 0..1, from the package's build-time routing) above which
     * `twinserve_runner_routing_drift_alert` is 1 and a warning is logged when it trips.
     */
    driftAlert: z.coerce.number().min(0).max(1).default(0.2),
    /** Most recent routed rows per model the drift is measured over. */
    driftWindowRows: int(1, 1_000_000).default(1000),
    /** The runner group it registers in; a gateway rollout may target one group (issue #19). */
    group: RunnerGroupSchema.default(DEFAULT_RUNNER_GROUP),
  })
  .superRefine((c, ctx) => {
    if (!c.insecureLocal && !c.signingSecret)
      ctx.addIssue({
        code: 'custom',
        path: ['signingSecret'],
        message:
          'RUNNER_SIGNING_SECRET is required to verify requests (pass --insecure-local to accept unsigned requests locally)',
      })
    const tls = [c.grpcTlsCert, c.grpcTlsKey, c.grpcTlsClientCa]
    if (tls.some((p) => p !== undefined) && tls.some((p) => p === undefined))
      ctx.addIssue({
        code: 'custom',
        path: ['grpcTlsClientCa'],
        message:
          'gRPC mutual TLS needs all three of --grpc-tls-cert, --grpc-tls-key and --grpc-tls-client-ca',
      })
    else if (tls.some((p) => p !== undefined) && c.grpcPort === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['grpcPort'],
        message: 'the gRPC TLS files are given but no --grpc-port to serve gRPC on',
      })
    else if (c.grpcPort !== undefined && !c.insecureLocal && tls.some((p) => p === undefined))
      ctx.addIssue({
        code: 'custom',
        path: ['grpcPort'],
        message:
          "gRPC cannot carry the gateway's request signature: serve it with mutual TLS (--grpc-tls-cert, --grpc-tls-key, --grpc-tls-client-ca) or, for local use only, --insecure-local",
      })
    if (c.gatewayUrl && !c.signingSecret)
      ctx.addIssue({
        code: 'custom',
        path: ['signingSecret'],
        message:
          'RUNNER_SIGNING_SECRET is required with --gateway-url (membership calls are signed)',
      })
  })
/**
 * Config keys whose flag or variable is not the usual one: `--<key in kebab-case>` and `RUNNER_<KEY IN
 * SNAKE_CASE>`. A null flag means environment only.
 */
const FLAG_EXCEPTIONS: Readonly<Record<string, string | null>> = {
  // Repeatable: one directory per --package.
  packages: 'package',
  // Repeatable: one <model>=<dir> per --generation.
  generation: 'generation',
  // A secret: a flag would show in `ps`.
  signingSecret: null,
}
const ENV_EXCEPTIONS: Readonly<Record<string, string>> = {
  gatewayUrl: 'GATEWAY_URL',
  runnerId: 'RUNNER_ID',
}
/** Flag only, so that accepting unsigned requests is always a visible, explicit choice. */
const FLAG_ONLY = 'insecureLocal'

const kebabCase = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
const snakeCase = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()

/**
 * Config key → [flag, environment variable], for every key of `RunnerConfigSchema` but `insecureLocal`. The flag
 * is `--<flag>`. `RUNNER_ENV` is the complete list of environment variables the runner reads; deployment
 * manifests set exactly these (infra's tests compare the two).
 */
export const RUNNER_OPTIONS: Readonly<Record<string, readonly [flag: string | null, env: string]>> =
  Object.fromEntries(
    Object.keys(RunnerConfigSchema.shape)
      .filter((key) => key !== FLAG_ONLY)
      .map((key) => [
        key,
        [
          key in FLAG_EXCEPTIONS ? (FLAG_EXCEPTIONS[key] ?? null) : kebabCase(key),
          ENV_EXCEPTIONS[key] ?? `RUNNER_${snakeCase(key)}`,
        ],
      ]),
  )

/** Every environment variable the runner reads. */
export const RUNNER_ENV: readonly string[] = Object.values(RUNNER_OPTIONS).map(([, env]) => env)

export type RunnerConfig = z.output<typeof RunnerConfigSchema>
export type RunnerConfigInput = z.input<typeof RunnerConfigSchema>

export const SERVE_USAGE = `usage: twinserve serve --package <dir> [--package <dir> …] [options]

  --package <dir>            a twin package to serve (repeatable; env RUNNER_PACKAGES, comma-separated)
  --host <addr>              listen address (default 127.0.0.1)
  --port <n>                 listen port (default 8790; 0 = any free port)
  --provider auto|cuda|cpu   execution provider (default auto: CUDA when it loads, else CPU)
  --threads <n>              onnxruntime intra-op threads per session
  --insecure-local           accept unsigned requests (local use only); otherwise RUNNER_SIGNING_SECRET is required
  --gateway-url <url>        register with this gateway, heartbeat, deregister on SIGTERM
  --public-url <url>         URL the gateway calls this runner on (default http://<host>:<port>)
  --runner-id <id>           stable id in the gateway's registry (default host-pid-random)
  --max-batch-size <n>       rows per coalesced run (default 16)
  --max-batch-wait-ms <n>    wait for a batch to fill (default 0: batches form while a run executes)
  --max-queue <n>            waiting requests before 503 (default 256)
  --concurrency <n>          runs at once (default 1)
  --session-threads on|off   each onnxruntime session in its own thread (default on; off: on the event loop)
  --session-nice <n>         run session threads n nice steps (0-19) below the event loop's thread, so that
                             requests and health checks preempt a running batch (default 10; Linux only; 0 = off)
  --request-timeout-ms <n>   per-request deadline (default 30000)
  --max-body-bytes <n>       request body limit (default 33554432)
  --body-timeout-ms <n>      the body must arrive within this (default 30000; 408 after)
  --keep-alive-timeout-ms <n>  idle keep-alive connections close after this (default 75000; keep it above
                             every client's and proxy's idle timeout)
  --merge-cache-entries <n>  materialised merges kept (default 8)
  --merge-cache-mb <n>       ... and their total size bound (default 2048)
  --merge-cache-entries-per-tenant <n>  entries one tenant's recipes may hold (default half the cache)
  --merge-quota-per-minute <n>  new materialised merges per tenant per minute (default 30; 0 = no quota)
  --drain-timeout-ms <n>     on SIGTERM, wait this long for accepted requests (default 120000)
  --log-level <l>            debug|info|warn|error (default info)
  --grpc-port <n>            also serve KServe's gRPC inference service on this port (default: off; 0 = any
                             free port); needs the three TLS files below (mutual TLS) or --insecure-local
  --grpc-tls-cert <file>     PEM certificate chain the gRPC port presents
  --grpc-tls-key <file>      its PEM private key
  --grpc-tls-client-ca <file>  PEM CA; gRPC clients must present a certificate it signed
  --generation <model>=<dir> generate text with a decoder package (repeatable): <dir> holds its tokenizer.json,
                             tokenizer_config.json and zoo.json (e.g. lm-twin=zoo/lm/models); serves /v1/* and
                             /v2/models/<model>/generate[_stream]
  --max-sequences <n>        sequences generating at once (default 64; 503 beyond)
  --kv-cache-mb <n>          KV cache the admitted sequences of a model may reserve (default 256; 503 beyond)
  --prefill-tokens-per-step <n>  prompt tokens prefilled per generation step (default 512)
  --baked-mixes <n>          sessions per generating model with a hot (pinned) mix baked in, each about one more
                             copy of the model in memory (default 1; 0: none)
  --repository-root <dir>    allow hot loads (POST /v2/repository/models/<m>/load) of packages under <dir>
                             (default: off)
  --memory-limit-mb <n>      memory the loaded packages may take (estimated from their files); a load beyond
                             it is refused with 507 (default: only the OS's available memory is checked)
  --drift-alert <x>          routing drift (0..1, total variation from the package's build-time routing) above
                             which the drift alert gauge is 1 and a warning is logged (default 0.2)
  --drift-window-rows <n>    recent routed rows per model the drift is measured over (default 1000)
  --group <name>             runner group registered with the gateway, which a rollout may target (default
                             "default")

Each flag also reads from its environment variable (${RUNNER_ENV.join(', ')});
flags win. The signing secret is read from the environment only.
`

/** Thrown for a bad flag or value; the message names it. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError'
}

function flagOf(key: string): string {
  if (key === FLAG_ONLY) return `--${kebabCase(key)}`
  const entry = RUNNER_OPTIONS[key]
  if (!entry) return key
  return entry[0] === null ? entry[1] : `--${entry[0]} (${entry[1]})`
}

/**
 * Parses `twinserve serve` arguments and the environment into a validated config.
 * @throws ConfigError naming the offending flag or variable
 */
export function parseServeArgs(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): RunnerConfig | 'help' {
  let parsed: ReturnType<typeof parseArgs>
  const options = {
    help: { type: 'boolean', short: 'h' },
    'insecure-local': { type: 'boolean' },
    package: { type: 'string', multiple: true },
    generation: { type: 'string', multiple: true },
  } as Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>
  for (const [key, [flag]] of Object.entries(RUNNER_OPTIONS))
    if (flag !== null && key !== 'packages' && key !== 'generation')
      options[flag] = { type: 'string' }
  try {
    parsed = parseArgs({ args: [...args], options, strict: true, allowPositionals: false })
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message : String(err))
  }
  const v = parsed.values
  if (v.help === true) return 'help'

  const raw: Record<string, unknown> = {}
  for (const [key, [flag, envName]] of Object.entries(RUNNER_OPTIONS)) {
    const fromFlag = flag === null ? undefined : v[flag]
    const fromEnv = env[envName]
    if (key === 'packages' || key === 'generation') {
      const list = Array.isArray(fromFlag)
        ? fromFlag
        : fromEnv
          ? fromEnv
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean)
          : []
      raw[key] = list
    } else if (fromFlag !== undefined) raw[key] = fromFlag
    else if (fromEnv !== undefined && fromEnv !== '') raw[key] = fromEnv
  }
  raw.insecureLocal = v['insecure-local'] === true
  const result = RunnerConfigSchema.safeParse(raw)
  if (!result.success) {
    const messages = result.error.issues.map((i) => {
      const key = String(i.path[0] ?? '')
      return `${key ? `${flagOf(key)}: ` : ''}${i.message}`
    })
    throw new ConfigError(messages.join('; '))
  }
  return result.data
}
