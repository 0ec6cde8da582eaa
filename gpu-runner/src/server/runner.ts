/**
 * The runner's lifecycle: load every package into sessions, start the scheduler and the HTTP server, join the
 * gateway, and on shutdown (SIGTERM) stop taking work, drain what was accepted, deregister, close and exit.
 * @module
 */

import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { hostname } from 'node:os'
import { serve } from '@hono/node-server'
import { AppError, DEFAULT_MAX_SKEW_S, type RunnerRegistration } from '@twinserve/shared'
import type { RunnerConfig } from '../config.ts'
import { LmProfile } from '../generate/lm-profile.ts'
import { TextGenerator, type TextGeneratorOptions } from '../generate/text-generator.ts'
import { type GrpcServer, startGrpcServer } from '../grpc/grpc-server.ts'
import { loadModel } from '../model/load-model.ts'
import type { MergeTensorFn } from '../model/materialize.ts'
import { MergeQuota } from '../model/merge-quota.ts'
import type { PreparedRequest, RunResult, ServedModel } from '../model/served-model.ts'
import { createApp } from './app.ts'
import type { AppDeps } from './app-deps.ts'
import type { GenerationEngines } from './generation-metrics.ts'
import { InferenceStatistics } from './inference-stats.ts'
import { createLogger, errorFields, type Logger } from './logger.ts'
import { Membership } from './membership.ts'
import { createMetrics, type RunnerMetrics } from './metrics.ts'
import { ModelRepository } from './model-repository.ts'
import { ReplayGuard } from './replay-guard.ts'
import { Scheduler } from './scheduler.ts'

export interface RunnerDeps {
  logger?: Logger
  /** The merge engine's `mergeTensor` (materialised `merge_method` path). */
  merge?: MergeTensorFn
}

export interface Runner {
  url: string
  /** The generating models (`--generation`), for tests and benchmarks that watch the engines. */
  generators: ReadonlyMap<string, TextGenerator>
  port: number
  /** The gRPC port (KServe's inference service) when --grpc-port is set. */
  grpcPort?: number
  models: ReadonlyMap<string, ServedModel>
  /** Stops taking work, drains, deregisters, closes the server. Idempotent. */
  shutdown(reason: string): Promise<{ drained: boolean }>
}

type HttpServer = ReturnType<typeof serve>

interface LoadedModels {
  repository: ModelRepository
  models: Map<string, ServedModel>
  provider: 'cuda' | 'cpu'
  /** Why CUDA was not used, when it was asked for. */
  fallbackReason: string | undefined
}

/** Opens one package's sessions with the runner's options (at start and for hot loads alike). */
function modelOpener(
  config: RunnerConfig,
  merge: MergeTensorFn | undefined,
  onCacheLookup: (model: string, hit: boolean) => void,
  generates: (model: string) => boolean,
): (dir: string, provider: RunnerConfig['provider']) => Promise<ServedModel> {
  return async (dir, provider) => {
    const model: ServedModel = await loadModel(dir, {
      provider,
      // Only the generation engine scores prompts in the likelihood graph.
      likelihoodSession: generates,
      mergedSessions: generates,
      ...(config.threads ? { threads: config.threads } : {}),
      sessionThreads: config.sessionThreads === 'on',
      sessionNice: config.sessionNice,
      ...(merge ? { merge } : {}),
      mergeCache: {
        maxEntries: config.mergeCacheEntries,
        maxBytes: config.mergeCacheMb * 1024 * 1024,
        maxEntriesPerOwner:
          config.mergeCacheEntriesPerTenant ?? Math.max(1, Math.ceil(config.mergeCacheEntries / 2)),
        onLookup: (hit) => onCacheLookup(model.name, hit),
      },
    })
    return model
  }
}

function logLoaded(logger: Logger, model: ServedModel, dir: string): void {
  logger.info('model loaded', {
    model: model.name,
    version: model.version,
    dir,
    provider: model.provider,
    experts: model.experts,
    variants: model.variantNames,
    // A package routed by the prompt's likelihood: scored in its likelihood graph, or from the logits and why.
    ...(model.likelihoodScoring ? { likelihood_scoring: model.likelihoodScoring } : {}),
    ...(model.decodeGraph ? { decode_graph: model.decodeGraph } : {}),
    ...(model.mergedDecode ? { merged_decode: model.mergedDecode } : {}),
    ...(model.metadata().parameters?.materialized_unavailable
      ? { materialized_unavailable: model.metadata().parameters?.materialized_unavailable }
      : {}),
  })
}

/**
 * How far below the event loop's thread the session threads run, for the start log: what `--session-nice` asked
 * for and, when it did not happen, why (the platform, a permission, sessions on the event loop).
 */
function sessionPriority(
  config: RunnerConfig,
  models: ReadonlyMap<string, ServedModel>,
): { session_nice: number; session_nice_note?: string } {
  if (config.sessionThreads === 'off')
    return config.sessionNice
      ? {
          session_nice: 0,
          session_nice_note: 'not lowered: sessions run on the event loop (--session-threads off)',
        }
      : { session_nice: 0 }
  const p = models.values().next().value?.sessionPriority
  return { session_nice: p?.lowered ?? 0, ...(p?.note ? { session_nice_note: p.note } : {}) }
}

/**
 * Opens every package's sessions into the model repository (which hot loads add to later); `onCacheLookup` counts
 * merge-cache hits (wired once metrics exist), `onChange` runs after a hot load or unload.
 */
async function loadModels(
  config: RunnerConfig,
  logger: Logger,
  merge: MergeTensorFn | undefined,
  hooks: {
    onCacheLookup: (model: string, hit: boolean) => void
    onChange: () => void
    pinned: () => ReadonlySet<string>
  },
): Promise<LoadedModels> {
  const generates = (model: string) => hooks.pinned().has(model)
  const open = modelOpener(config, merge, hooks.onCacheLookup, generates)
  let provider = config.provider
  const repository = new ModelRepository({
    ...(config.repositoryRoot ? { root: config.repositoryRoot } : {}),
    ...(config.memoryLimitMb ? { memoryLimitMb: config.memoryLimitMb } : {}),
    bakedMixes: config.bakedMixes,
    // Hot loads open on the provider the packages at start settled on.
    open: async (dir) => {
      const model = await open(dir, provider)
      logLoaded(logger, model, dir)
      return model
    },
    pinned: hooks.pinned,
    likelihoodSession: generates,
    onChange: hooks.onChange,
    logger,
  })
  for (const dir of config.packages) {
    const model = await open(dir, provider)
    await repository.add(model, dir)
    // The first session settled the provider; the rest open on it directly instead of retrying CUDA.
    provider = model.provider
    logLoaded(logger, model, dir)
  }
  const models = repository.current
  const first = models.values().next().value
  const fallbackReason = first?.fallbackReason
  if (fallbackReason)
    logger.warn('CUDA execution provider unavailable; running on CPU', {
      requested: config.provider,
      reason: fallbackReason,
    })
  return { repository, models, provider: first?.provider ?? 'cpu', fallbackReason }
}

/**
 * A generation engine per `--generation <model>=<dir>`: the model's twin graph, the tokenizer and template of
 * <dir>. The sequence limit is the runner's, split evenly between the generating models.
 */
async function loadGenerators(
  config: RunnerConfig,
  models: ReadonlyMap<string, ServedModel>,
  logger: Logger,
  onFinish: (model: string) => TextGeneratorOptions['onFinish'],
): Promise<Map<string, TextGenerator>> {
  const generators = new Map<string, TextGenerator>()
  const share = Math.max(1, Math.floor(config.maxSequences / Math.max(1, config.generation.length)))
  for (const entry of config.generation) {
    const at = entry.indexOf('=')
    const name = entry.slice(0, at)
    const dir = entry.slice(at + 1)
    const model = models.get(name)
    if (!model)
      throw new AppError(
        'INVALID_MODEL',
        `--generation ${entry}: no package named '${name}' is served (models: ${[...models.keys()].join(', ')})`,
      )
    const gen = new TextGenerator(model, await LmProfile.load(dir), {
      maxSequences: share,
      maxBytes: config.kvCacheMb * 1024 * 1024,
      prefillTokensPerStep: config.prefillTokensPerStep,
      onFinish: onFinish(name),
      bakedMixes: config.bakedMixes,
    })
    generators.set(name, gen)
    logger.info('generation enabled', {
      model: name,
      profile: dir,
      max_context: gen.profile.maxContext,
      max_sequences: share,
      kv_cache_mb: config.kvCacheMb,
      baked_mixes: config.bakedMixes,
    })
  }
  return generators
}

/** The scheduler that batches requests onto the models' sessions, and the metrics that watch it. */
function servingPipeline(
  config: RunnerConfig,
  loaded: LoadedModels,
  draining: () => boolean,
  stats: InferenceStatistics,
  logger: Logger,
  generation: GenerationEngines,
): { scheduler: Scheduler<PreparedRequest, RunResult>; metrics: RunnerMetrics } {
  const { models, repository } = loaded
  let metrics: RunnerMetrics | undefined
  const scheduler = new Scheduler<PreparedRequest, RunResult>(
    (batch) => {
      const name = batch[0]?.model ?? ''
      // The version the requests were prepared for: after a hot swap, the old one until its requests are done.
      const model = repository.instance(name, batch[0]?.version ?? '')
      if (!model) return Promise.reject(new AppError('INTERNAL', `model '${name}' vanished`))
      const started = performance.now()
      for (const r of batch) r.startedAt = started
      const rows = batch.reduce((a, r) => a + r.rows, 0)
      // The batch holds its version too: requests that time out let go of theirs while the run goes on.
      repository.hold(model)
      const run = model.runIsolated(batch)
      void run.finally(() => repository.release(model)).catch(() => undefined)
      run.then(
        (results) => {
          stats.batch(name, rows, batch.length, (performance.now() - started) * 1e6)
          for (const r of results)
            if (!(r instanceof AppError) && r.routedWeights)
              metrics?.routing(
                name,
                model.experts,
                r.routedWeights,
                repository.current.get(name) === model
                  ? { profile: model.manifest.routingProfile }
                  : undefined,
              )
        },
        () => undefined,
      )
      return run
    },
    {
      maxBatchSize: config.maxBatchSize,
      maxBatchWaitMs: config.maxBatchWaitMs,
      maxQueue: config.maxQueue,
      concurrency: config.concurrency,
      onBatch: ({ key, requests, rows }) => {
        const model = key.split('|')[0] ?? ''
        metrics?.batchRows.observe({ model }, rows)
        metrics?.batchRequests.observe({ model }, requests)
      },
    },
  )
  metrics = createMetrics({
    queueDepth: () => scheduler.queueDepth,
    inFlight: () => scheduler.inFlight,
    capacity: config.maxQueue,
    draining,
    cache: () => [...models.values()].map((m) => ({ model: m.name, ...m.cacheStats() })),
    versions: () => repository.loaded().map((v) => v.model.name),
    generation,
    drift: {
      alert: config.driftAlert,
      windowRows: config.driftWindowRows,
      onAlert: (model, drift) =>
        logger.warn('routing drift alert: live routing has moved from the build-time routing', {
          model,
          drift: Number(drift.toFixed(4)),
          threshold: config.driftAlert,
        }),
    },
  })
  metrics.provider.set({ provider: loaded.provider }, 1)
  return { scheduler, metrics }
}

/** The gRPC listener when --grpc-port is set (config.ts has checked it has mTLS or --insecure-local). */
async function listenGrpc(
  deps: AppDeps,
  config: RunnerConfig,
  logger: Logger,
): Promise<GrpcServer | undefined> {
  if (config.grpcPort === undefined) return undefined
  const { grpcTlsCert: cert, grpcTlsKey: key, grpcTlsClientCa: clientCa } = config
  const tls = cert && key && clientCa ? { cert, key, clientCa } : undefined
  const grpc = await startGrpcServer(deps, {
    host: config.host,
    port: config.grpcPort,
    ...(tls ? { tls } : {}),
  })
  if (!tls)
    logger.warn(
      '--insecure-local: gRPC port without TLS or client certificates; do not expose it',
      {
        grpc_port: grpc.port,
      },
    )
  return grpc
}

async function listen(
  fetch: (req: Request) => Response | Promise<Response>,
  config: RunnerConfig,
): Promise<{ server: HttpServer; port: number; url: string }> {
  const server = await new Promise<HttpServer>((resolve, reject) => {
    const s = serve({ fetch, hostname: config.host, port: config.port }, () => resolve(s))
    s.once('error', reject)
  })
  // Idle connections outlive every client's idle timeout (workerd's pool: 5 s, like Node's default), so no
  // client sends on one the runner is closing; and a request that arrived while the process was frozen
  // (SIGSTOP) is still read on SIGCONT instead of being dropped with its expired connection.
  if ('keepAliveTimeout' in server) server.keepAliveTimeout = config.keepAliveTimeoutMs
  const port = (server.address() as AddressInfo).port
  const url =
    config.publicUrl ??
    `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`
  return { server, port, url }
}

export async function startRunner(config: RunnerConfig, deps: RunnerDeps = {}): Promise<Runner> {
  const logger = deps.logger ?? createLogger({ level: config.logLevel })
  const started = performance.now()
  let cacheLookup: (model: string, hit: boolean) => void = () => undefined
  let membership: Membership | undefined
  const generating = new Set(config.generation.map((g) => g.slice(0, g.indexOf('='))))
  const loaded = await loadModels(config, logger, deps.merge, {
    onCacheLookup: (model, hit) => cacheLookup(model, hit),
    // The gateway learns the new version (or the unload) now, not at the next heartbeat.
    onChange: () => void membership?.beat(),
    pinned: () => generating,
  })
  const { models, repository, provider: usedProvider, fallbackReason } = loaded
  let draining = false
  const stats = new InferenceStatistics()
  let generators = new Map<string, TextGenerator>()
  const engines = () => [...generators].map(([model, g]) => ({ model, engine: g.engine }))
  const { scheduler, metrics } = servingPipeline(
    config,
    loaded,
    () => draining,
    stats,
    logger,
    engines,
  )
  cacheLookup = (model, hit) => metrics.cacheLookups.inc({ model, result: hit ? 'hit' : 'miss' })

  generators = await loadGenerators(config, models, logger, metrics.generationFinished)
  const appDeps: AppDeps = {
    models,
    repository,
    generators,
    scheduler,
    metrics,
    stats,
    maxBatchSize: config.maxBatchSize,
    logger,
    provider: usedProvider,
    ...(fallbackReason ? { providerFallbackReason: fallbackReason } : {}),
    signingSecret: config.insecureLocal ? null : (config.signingSecret ?? null),
    maxBodyBytes: config.maxBodyBytes,
    bodyTimeoutMs: config.bodyTimeoutMs,
    replay: new ReplayGuard({ windowS: DEFAULT_MAX_SKEW_S }),
    mergeQuota: new MergeQuota(config.mergeQuotaPerMinute),
    requestTimeoutMs: config.requestTimeoutMs,
    ready: () => !draining,
  }
  const app = createApp(appDeps)
  if (config.insecureLocal)
    logger.warn('--insecure-local: accepting unsigned requests; do not expose this port')

  const { server, port, url } = await listen(app.fetch, config)
  const grpc = await listenGrpc(appDeps, config, logger)
  const runnerId =
    config.runnerId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`

  const registration = (): RunnerRegistration => ({
    runner_id: runnerId,
    url,
    provider: usedProvider,
    models: [...models.values()].map((mm) => {
      const drift = metrics.drift(mm.name)
      return {
        name: mm.name,
        version: mm.version,
        variants: mm.variantNames,
        experts: mm.experts,
        ready: !draining,
        ...(drift === undefined ? {} : { routing_drift: drift }),
      }
    }),
    load: {
      queue_depth: scheduler.queueDepth,
      in_flight: scheduler.inFlight,
      capacity: scheduler.capacity,
    },
    draining,
    group: config.group,
  })
  membership =
    config.gatewayUrl && config.signingSecret
      ? new Membership({
          gatewayUrl: config.gatewayUrl,
          secret: config.signingSecret,
          state: registration,
          logger,
        })
      : undefined
  membership?.start()

  logger.info('listening', {
    url,
    port,
    host: config.host,
    runner_id: runnerId,
    provider: usedProvider,
    ...sessionPriority(config, models),
    models: [...models.keys()],
    signed: !config.insecureLocal,
    grpc_port: grpc?.port ?? null,
    gateway: config.gatewayUrl ?? null,
    startup_ms: Math.round(performance.now() - started),
  })

  let shutdown: Promise<{ drained: boolean }> | undefined
  return {
    url,
    port,
    ...(grpc ? { grpcPort: grpc.port } : {}),
    models,
    generators,
    shutdown(reason) {
      shutdown ??= (async () => {
        draining = true
        logger.info('draining', {
          reason,
          queue_depth: scheduler.queueDepth,
          in_flight: scheduler.inFlight,
        })
        const drainedPromise = Promise.all([
          scheduler.drain(config.drainTimeoutMs),
          drainGenerators(generators, config.drainTimeoutMs),
        ]).then(([a, b]) => a && b)
        // Tell the gateway at once so that it stops routing here while we finish.
        await membership?.beat()
        const drained = await drainedPromise
        if (!drained)
          logger.error('drain timed out; abandoning requests still running', {
            queue_depth: scheduler.queueDepth,
            in_flight: scheduler.inFlight,
          })
        await membership?.stop()
        await Promise.all([closeServer(server, logger), grpc?.close(5000)])
        // Ends the session threads: nothing runs on them any more.
        await repository.close()
        logger.info('stopped', { drained })
        return { drained }
      })()
      return shutdown
    },
  }
}

/** Waits for every generating sequence to finish, up to the drain timeout. */
async function drainGenerators(
  generators: ReadonlyMap<string, TextGenerator>,
  timeoutMs: number,
): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs)
  })
  const idle = Promise.all([...generators.values()].map((g) => g.engine.idle())).then(() => true)
  const drained = await Promise.race([idle, timedOut])
  clearTimeout(timer)
  return drained
}

/** Closes the listener and waits for responses being written; idle keep-alive sockets are closed at once. */
async function closeServer(server: HttpServer, logger: Logger): Promise<void> {
  await new Promise<void>((resolve) => {
    const force = setTimeout(() => {
      clearInterval(sweep)
      logger.warn('closing connections that did not finish')
      if ('closeAllConnections' in server) server.closeAllConnections()
      resolve()
    }, 5000)
    // Connections that finish their last response after close() become idle later; sweep them until closed.
    const sweep = setInterval(() => {
      if ('closeIdleConnections' in server) server.closeIdleConnections()
    }, 50)
    server.close((err) => {
      if (err) logger.warn('server close', errorFields(err))
      clearTimeout(force)
      clearInterval(sweep)
      resolve()
    })
    if ('closeIdleConnections' in server) server.closeIdleConnections()
  })
}

/** SIGTERM/SIGINT → graceful shutdown, then exit (0 when everything accepted was answered). */
export function exitOnSignals(runner: Runner, logger: Logger): void {
  let signalled = false
  for (const sig of ['SIGTERM', 'SIGINT'] as const)
    process.on(sig, () => {
      if (signalled) {
        logger.warn('second signal: exiting without finishing the drain', { signal: sig })
        process.exit(1)
      }
      signalled = true
      runner.shutdown(sig).then(
        ({ drained }) => process.exit(drained ? 0 : 1),
        (err: unknown) => {
          logger.error('shutdown failed', errorFields(err))
          process.exit(1)
        },
      )
    })
}
