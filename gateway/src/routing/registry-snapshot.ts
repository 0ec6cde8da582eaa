/**
 * What the registry object hands to isolates: the live runners as registered, and the rules for reading them.
 * Kept apart from the Durable Object class so routing code does not import the `cloudflare:workers` runtime.
 * @module
 */
import type { RunnerLoad, RunnerRegistration } from '@twinserve/shared'

/** A runner missing this many heartbeat intervals in a row is expired. */
export const EXPIRY_INTERVALS = 3

export interface RunnerRecord {
  runner_id: string
  url: string
  provider: 'cuda' | 'cpu'
  models: RunnerRegistration['models']
  load: RunnerLoad
  draining: boolean
  /** The runner's group (`--group`; "default" when it names none), which a rollout may target. */
  group: string
  /** ms since epoch */
  registered_at: number
  last_seen: number
}

/** A model some runner serves or has served (the gateway's catalog): unknown names are a 404 at once. */
export interface CatalogEntry {
  name: string
  /** Package versions runners have announced for it, newest first. */
  versions: string[]
  /** ms since epoch: first and latest announcement */
  first_seen: number
  last_seen: number
}

export interface RegistrySnapshot {
  runners: RunnerRecord[]
  heartbeat_interval_ms: number
  catalog: CatalogEntry[]
}

export interface ColdStartResult {
  snapshot: RegistrySnapshot
  /** No runner held the model when asked, so the call waited (until one registered or the time was up). */
  cold: boolean
  waited_ms: number
  /** Whether any runner serves or has served the model; an unknown model is answered at once, not waited for. */
  known: boolean
}

/** Whether `r` can take new requests for `model` (live-ness is checked separately). */
export function holdsModel(r: RunnerRecord, model: string): boolean {
  return !r.draining && r.models.some((m) => m.name === model && m.ready)
}

/** Whether `r` announces `model` at `version` (and is in `group`, when one is asked for). */
export function servesVersion(
  r: RunnerRecord,
  model: string,
  version: string,
  group: string | undefined,
): boolean {
  return (
    (group === undefined || r.group === group) &&
    r.models.some((m) => m.name === model && m.version === version)
  )
}
