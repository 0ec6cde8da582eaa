import { describe, expect, it } from 'vitest'
import {
  ConfigError,
  parseServeArgs,
  RUNNER_ENV,
  RUNNER_OPTIONS,
  RunnerConfigSchema,
  SERVE_USAGE,
} from './config.ts'
import { BAKED_MIXES } from './generate/merged-mixes.ts'

const secret = { RUNNER_SIGNING_SECRET: 'a-long-enough-secret' }

function fails(args: string[], env: Record<string, string> = secret): string {
  try {
    parseServeArgs(args, env)
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError)
    return (e as Error).message
  }
  throw new Error('expected a ConfigError')
}

describe('parseServeArgs', () => {
  it('applies defaults', () => {
    expect(parseServeArgs(['--package', 'p'], secret)).toMatchObject({
      packages: ['p'],
      host: '127.0.0.1',
      port: 8790,
      provider: 'auto',
      insecureLocal: false,
      maxBatchSize: 16,
      maxBatchWaitMs: 0,
      maxQueue: 256,
      concurrency: 1,
      sessionThreads: 'on',
      sessionNice: 10,
      requestTimeoutMs: 30000,
      signingSecret: 'a-long-enough-secret',
    })
  })

  it('takes repeated --package, flags over environment, and lists from the environment', () => {
    const env = { ...secret, RUNNER_PORT: '9000', RUNNER_PROVIDER: 'cpu', RUNNER_PACKAGES: 'a, b' }
    expect(parseServeArgs([], env)).toMatchObject({
      packages: ['a', 'b'],
      port: 9000,
      provider: 'cpu',
    })
    expect(parseServeArgs(['--package', 'x', '--package', 'y', '--port', '0'], env)).toMatchObject({
      packages: ['x', 'y'],
      port: 0,
    })
    expect(parseServeArgs(['--package', 'p', '--insecure-local'], {})).toMatchObject({
      insecureLocal: true,
    })
    expect(
      parseServeArgs(
        ['--package', 'p', '--gateway-url', 'http://127.0.0.1:8787', '--max-batch-wait-ms', '5'],
        secret,
      ),
    ).toMatchObject({ gatewayUrl: 'http://127.0.0.1:8787', maxBatchWaitMs: 5 })
  })

  it('names the flag or variable that is wrong', () => {
    expect(fails([])).toMatch(
      /--package \(RUNNER_PACKAGES\): at least one --package <dir> is required/,
    )
    expect(fails(['--package', 'p', '--port', '99999'])).toMatch(/--port \(RUNNER_PORT\)/)
    expect(fails(['--package', 'p', '--provider', 'tpu'])).toMatch(/--provider \(RUNNER_PROVIDER\)/)
    expect(fails(['--package', 'p', '--max-queue', '0'])).toMatch(/--max-queue/)
    // Nice ends at 19; a negative value would raise the session threads above the event loop (and need privilege).
    expect(fails(['--package', 'p', '--session-nice', '20'])).toMatch(
      /--session-nice \(RUNNER_SESSION_NICE\)/,
    )
    expect(fails(['--package', 'p', '--session-nice=-1'])).toMatch(/--session-nice/)
    expect(fails(['--package', 'p', '--gateway-url', 'not a url'])).toMatch(
      /--gateway-url \(GATEWAY_URL\)/,
    )
    expect(fails(['--package', 'p', '--frobnicate'])).toMatch(/frobnicate/)
    expect(fails(['--package', 'p'], {})).toMatch(
      /RUNNER_SIGNING_SECRET: RUNNER_SIGNING_SECRET is required to verify requests \(pass --insecure-local/,
    )
    expect(fails(['--package', 'p'], { RUNNER_SIGNING_SECRET: 'short' })).toMatch(
      /at least 16 characters/,
    )
    expect(fails(['--package', 'p', '--insecure-local', '--gateway-url', 'http://g'], {})).toMatch(
      /required with --gateway-url/,
    )
  })

  it('serves gRPC only with mutual TLS or --insecure-local (it cannot carry the signature; issue #15)', () => {
    const tls = [
      '--grpc-tls-cert',
      'c.pem',
      '--grpc-tls-key',
      'k.pem',
      '--grpc-tls-client-ca',
      'ca.pem',
    ]
    expect(parseServeArgs(['--package', 'p'], secret)).not.toHaveProperty('grpcPort')
    expect(fails(['--package', 'p', '--grpc-port', '8791'])).toMatch(
      /--grpc-port \(RUNNER_GRPC_PORT\): gRPC cannot carry the gateway's request signature: serve it with mutual TLS .*--insecure-local/,
    )
    expect(parseServeArgs(['--package', 'p', '--grpc-port', '8791', ...tls], secret)).toMatchObject(
      {
        grpcPort: 8791,
        grpcTlsCert: 'c.pem',
        grpcTlsKey: 'k.pem',
        grpcTlsClientCa: 'ca.pem',
      },
    )
    expect(
      parseServeArgs(['--package', 'p', '--grpc-port', '0', '--insecure-local'], {}),
    ).toMatchObject({ grpcPort: 0, insecureLocal: true })
    expect(fails(['--package', 'p', '--grpc-port', '8791', ...tls.slice(0, 4)])).toMatch(
      /needs all three of --grpc-tls-cert, --grpc-tls-key and --grpc-tls-client-ca/,
    )
    expect(fails(['--package', 'p', ...tls])).toMatch(/no --grpc-port/)
    // An empty variable (how the manifests leave it off) is unset.
    expect(
      parseServeArgs([], { ...secret, RUNNER_PACKAGES: 'p', RUNNER_GRPC_PORT: '' }),
    ).not.toHaveProperty('grpcPort')
  })

  it('has help, and lists every environment variable it reads', () => {
    expect(parseServeArgs(['--help'], {})).toBe('help')
    expect(RUNNER_ENV).toContain('RUNNER_SIGNING_SECRET')
    expect(RUNNER_ENV).toContain('GATEWAY_URL')
    expect(new Set(RUNNER_ENV).size).toBe(RUNNER_ENV.length)
  })

  it('derives each flag and variable from the config key, with the documented exceptions', () => {
    // Pinned: a renamed flag or variable breaks scripts and deployments, so it must show up here.
    expect(RUNNER_OPTIONS).toEqual({
      packages: ['package', 'RUNNER_PACKAGES'],
      host: ['host', 'RUNNER_HOST'],
      port: ['port', 'RUNNER_PORT'],
      provider: ['provider', 'RUNNER_PROVIDER'],
      threads: ['threads', 'RUNNER_THREADS'],
      signingSecret: [null, 'RUNNER_SIGNING_SECRET'],
      gatewayUrl: ['gateway-url', 'GATEWAY_URL'],
      publicUrl: ['public-url', 'RUNNER_PUBLIC_URL'],
      runnerId: ['runner-id', 'RUNNER_ID'],
      maxBatchSize: ['max-batch-size', 'RUNNER_MAX_BATCH_SIZE'],
      maxBatchWaitMs: ['max-batch-wait-ms', 'RUNNER_MAX_BATCH_WAIT_MS'],
      maxQueue: ['max-queue', 'RUNNER_MAX_QUEUE'],
      concurrency: ['concurrency', 'RUNNER_CONCURRENCY'],
      sessionThreads: ['session-threads', 'RUNNER_SESSION_THREADS'],
      sessionNice: ['session-nice', 'RUNNER_SESSION_NICE'],
      requestTimeoutMs: ['request-timeout-ms', 'RUNNER_REQUEST_TIMEOUT_MS'],
      maxBodyBytes: ['max-body-bytes', 'RUNNER_MAX_BODY_BYTES'],
      bodyTimeoutMs: ['body-timeout-ms', 'RUNNER_BODY_TIMEOUT_MS'],
      keepAliveTimeoutMs: ['keep-alive-timeout-ms', 'RUNNER_KEEP_ALIVE_TIMEOUT_MS'],
      mergeCacheEntries: ['merge-cache-entries', 'RUNNER_MERGE_CACHE_ENTRIES'],
      mergeCacheMb: ['merge-cache-mb', 'RUNNER_MERGE_CACHE_MB'],
      mergeCacheEntriesPerTenant: [
        'merge-cache-entries-per-tenant',
        'RUNNER_MERGE_CACHE_ENTRIES_PER_TENANT',
      ],
      mergeQuotaPerMinute: ['merge-quota-per-minute', 'RUNNER_MERGE_QUOTA_PER_MINUTE'],
      drainTimeoutMs: ['drain-timeout-ms', 'RUNNER_DRAIN_TIMEOUT_MS'],
      logLevel: ['log-level', 'RUNNER_LOG_LEVEL'],
      grpcPort: ['grpc-port', 'RUNNER_GRPC_PORT'],
      grpcTlsCert: ['grpc-tls-cert', 'RUNNER_GRPC_TLS_CERT'],
      grpcTlsKey: ['grpc-tls-key', 'RUNNER_GRPC_TLS_KEY'],
      grpcTlsClientCa: ['grpc-tls-client-ca', 'RUNNER_GRPC_TLS_CLIENT_CA'],
      generation: ['generation', 'RUNNER_GENERATION'],
      maxSequences: ['max-sequences', 'RUNNER_MAX_SEQUENCES'],
      kvCacheMb: ['kv-cache-mb', 'RUNNER_KV_CACHE_MB'],
      prefillTokensPerStep: ['prefill-tokens-per-step', 'RUNNER_PREFILL_TOKENS_PER_STEP'],
      bakedMixes: ['baked-mixes', 'RUNNER_BAKED_MIXES'],
      repositoryRoot: ['repository-root', 'RUNNER_REPOSITORY_ROOT'],
      memoryLimitMb: ['memory-limit-mb', 'RUNNER_MEMORY_LIMIT_MB'],
      driftAlert: ['drift-alert', 'RUNNER_DRIFT_ALERT'],
      driftWindowRows: ['drift-window-rows', 'RUNNER_DRIFT_WINDOW_ROWS'],
      group: ['group', 'RUNNER_GROUP'],
    })
    // --baked-mixes defaults to the engine's own default.
    expect(RunnerConfigSchema.parse({ packages: ['p'], insecureLocal: true }).bakedMixes).toBe(
      BAKED_MIXES,
    )
    // --help documents every flag.
    for (const [flag] of Object.values(RUNNER_OPTIONS))
      if (flag !== null) expect(SERVE_USAGE).toContain(`--${flag} `)
  })
})

describe('--generation', () => {
  it('is repeatable as a flag and comma-separated in RUNNER_GENERATION; each entry is <model>=<dir>', () => {
    const flags = parseServeArgs(
      ['--package', 'p', '--insecure-local', '--generation', 'a=x', '--generation', 'b=y'],
      {},
    )
    expect(flags !== 'help' && flags.generation).toEqual(['a=x', 'b=y'])
    const env = parseServeArgs(['--package', 'p', '--insecure-local'], {
      RUNNER_GENERATION: 'a=x, b=y',
    })
    expect(env !== 'help' && env.generation).toEqual(['a=x', 'b=y'])
    expect(() =>
      parseServeArgs(['--package', 'p', '--insecure-local', '--generation', 'lm-twin'], {}),
    ).toThrow(/--generation.*must be <model>=<dir>/)
  })
})
