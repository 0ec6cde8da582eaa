/**
 * What the runner's HTTP app is built from (runner.ts wires the real ones; tests may build their own).
 * @module
 */
import type { TextGenerator } from '../generate/text-generator.ts'
import type { MergeQuota } from '../model/merge-quota.ts'
import type { PreparedRequest, RunResult, ServedModel } from '../model/served-model.ts'
import type { InferenceStatistics } from './inference-stats.ts'
import type { Logger } from './logger.ts'
import type { RunnerMetrics } from './metrics.ts'
import type { ModelRepository } from './model-repository.ts'
import type { ReplayGuard } from './replay-guard.ts'
import type { Scheduler } from './scheduler.ts'

export interface AppDeps {
  /** The version each model's new requests go to (the repository's `current`). */
  models: ReadonlyMap<string, ServedModel>
  /** Hot load and unload, and the leases that keep a version loaded while its requests run. */
  repository: ModelRepository
  /** Models that generate text (`--generation`), by name: `/v1/*` and `/v2/models/{m}/generate[_stream]`. */
  generators: ReadonlyMap<string, TextGenerator>
  scheduler: Scheduler<PreparedRequest, RunResult>
  metrics: RunnerMetrics
  /** Per-model statistics in Triton's shape (`/v2/models/{m}/stats`). */
  stats: InferenceStatistics
  /** The scheduler's batch limit in rows, reported as `max_batch_size` in model configs. */
  maxBatchSize: number
  logger: Logger
  provider: 'cuda' | 'cpu'
  /** Why CUDA was not used, when it was asked for. */
  providerFallbackReason?: string
  /** HMAC secret; null accepts unsigned requests (`--insecure-local`). */
  signingSecret: string | null
  maxBodyBytes: number
  /** The body must have arrived within this (408). */
  bodyTimeoutMs: number
  /** Signed nonces already used (a replay is refused). */
  replay: ReplayGuard
  /** New materialised merges per tenant. */
  mergeQuota: MergeQuota
  requestTimeoutMs: number
  /** Ready to take requests (models loaded, not draining). */
  ready: () => boolean
}
