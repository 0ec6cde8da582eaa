/**
 * The models a runner serves, as live things (issue #19): Triton's repository extension loads a package as a
 * model's new version beside the old one and unloads models, without a restart.
 *
 * - New requests take the current version at once (`current`, what `models` lists).
 * - Every inference holds a lease on the version it started on (`hold`/`release`), from the moment it names the
 *   model until its answer is built, so a request in flight finishes on the version it began with, its batch
 *   included: the scheduler runs a batch on the exact version its requests were prepared for (`instance`).
 * - A version that is no longer current is released (its sessions closed) when its last lease ends.
 * - Loads run one at a time, and each checks memory for the new version beside all those still held.
 * @module
 */
import { AppError, type RepositoryLoadResponse } from '@twinserve/shared'
import type { ServedModel } from '../model/served-model.ts'
import { readManifest } from '../package/load-package.ts'
import { packageVersion } from '../package/package-version.ts'
import { errorFields, type Logger } from './logger.ts'
import { checkMemoryFits, estimateLoadedBytes, resolvePackageDir } from './package-location.ts'

export interface ModelRepositoryOptions {
  /** `--repository-root`: loads read packages under it only; undefined turns hot loading off. */
  root?: string
  /** `--memory-limit-mb`: every version held plus a new one must fit in it. */
  memoryLimitMb?: number
  /** Opens a package directory into a served model (the runner's session options). */
  open: (dir: string) => Promise<ServedModel>
  /** Models that generate text hold their sessions in an engine; they are not swapped. */
  pinned?: () => ReadonlySet<string>
  /**
   * Whether `open` opens model `name`'s likelihood graph when its package routes by the prompt's likelihood
   * (load-model.ts `likelihoodSession`), so the memory check counts that session only where it opens; default yes.
   * The same models open a decoder's merged decode graph (`mergedSessions`): those generate.
   */
  likelihoodSession?: (name: string) => boolean
  /** `--baked-mixes`: sessions with a hot mix baked in that a generating model may open (the memory check's). */
  bakedMixes?: number
  /** Called after the served versions changed (the runner tells the gateway at once). */
  onChange?: () => void
  logger: Logger
  /** Memory the OS has available, in bytes (tests replace it). */
  available?: () => number
}

interface Held {
  leases: number
  /** Estimated bytes this version holds (package-location.ts). */
  bytes: number
}

export class ModelRepository {
  /** The version each model's new requests go to. */
  readonly current = new Map<string, ServedModel>()
  /** Every version loaded, current or retiring, with its leases. */
  private readonly held = new Map<ServedModel, Held>()
  /** Closed once released; awaited on shutdown. */
  private readonly closing = new Set<Promise<void>>()
  private queue: Promise<unknown> = Promise.resolve()

  constructor(private readonly opts: ModelRepositoryOptions) {}

  /** Adds a model loaded at start (its estimate counts against the memory limit). */
  async add(model: ServedModel, dir: string): Promise<void> {
    if (this.current.has(model.name))
      throw new AppError('INVALID_MODEL', `two packages are named '${model.name}' (${dir})`)
    this.current.set(model.name, model)
    const bytes = await estimateLoadedBytes(dir, model.manifest, {
      likelihoodSession: model.likelihoodSessionOpen,
      mergedSessions: model.mergedSessionBytes > 0,
      ...(this.opts.bakedMixes !== undefined ? { bakedMixes: this.opts.bakedMixes } : {}),
    })
    this.held.set(model, { leases: 0, bytes })
  }

  /** Every version loaded, current first, then those finishing their requests. */
  loaded(): { model: ServedModel; current: boolean; inFlight: number }[] {
    return [...this.held].map(([model, h]) => ({
      model,
      current: this.current.get(model.name) === model,
      inFlight: h.leases,
    }))
  }

  /** The loaded version `name`@`version` (current or retiring): where a prepared request's batch runs. */
  instance(name: string, version: string): ServedModel | undefined {
    for (const m of this.held.keys()) if (m.name === name && m.version === version) return m
    return undefined
  }

  /** Takes a lease on `model` (a version just looked up): it stays loaded until `release`. */
  hold(model: ServedModel): void {
    const h = this.held.get(model)
    if (h) h.leases++
  }

  release(model: ServedModel): void {
    const h = this.held.get(model)
    if (!h) return
    h.leases = Math.max(0, h.leases - 1)
    this.retireIfIdle(model)
  }

  /**
   * Loads the package at `location` as model `name`'s new version (or as a new model). Requests in flight stay on
   * the version they hold; new ones go to the new version as soon as this resolves.
   * @throws AppError FORBIDDEN / NOT_FOUND for the location, INVALID_REQUEST when the package is another model,
   * INSUFFICIENT_MEMORY when it does not fit, INVALID_MODEL when it does not load
   */
  load(name: string, location: string): Promise<RepositoryLoadResponse> {
    return this.serially(async () => {
      this.checkNotPinned(name)
      const dir = await resolvePackageDir(this.opts.root, location)
      const manifest = await readManifest(dir)
      if (manifest.name !== name)
        throw new AppError(
          'INVALID_REQUEST',
          `package '${location}' is model '${manifest.name}', not '${name}'; load it as /v2/repository/models/${manifest.name}/load`,
        )
      const previous = this.current.get(name)
      const version = packageVersion(manifest)
      if (previous?.version === version)
        return { name, version, state: 'READY' as const, previous_version: version }
      const bytes = await estimateLoadedBytes(dir, manifest, {
        likelihoodSession: this.opts.likelihoodSession?.(name) ?? true,
        mergedSessions: this.opts.likelihoodSession?.(name) ?? true,
        ...(this.opts.bakedMixes !== undefined ? { bakedMixes: this.opts.bakedMixes } : {}),
      })
      const heldBytes = [...this.held.values()].reduce((a, h) => a + h.bytes, 0)
      checkMemoryFits(
        `model '${name}' version ${version}`,
        bytes,
        heldBytes,
        this.opts.memoryLimitMb,
        this.opts.available,
      )
      const model = await this.opts.open(dir)
      if (model.name !== name || model.version !== version) {
        await model.close()
        throw new AppError(
          'INVALID_MODEL',
          `package ${dir} changed while it was loaded; load it again`,
        )
      }
      this.held.set(model, { leases: 0, bytes })
      this.current.set(name, model)
      const previousInFlight = previous ? (this.held.get(previous)?.leases ?? 0) : 0
      this.opts.logger.info('model version loaded', {
        model: name,
        version,
        dir,
        previous_version: previous?.version ?? null,
        previous_in_flight: previousInFlight,
      })
      if (previous) this.retireIfIdle(previous)
      this.opts.onChange?.()
      return {
        name,
        version,
        state: 'READY' as const,
        ...(previous
          ? { previous_version: previous.version, previous_in_flight: previousInFlight }
          : {}),
      }
    })
  }

  /**
   * Stops serving model `name`: new requests get 404, those in flight finish, then its sessions close.
   * @throws AppError NOT_FOUND when it is not served
   */
  unload(name: string): Promise<RepositoryLoadResponse> {
    return this.serially(async () => {
      this.checkNotPinned(name)
      const model = this.current.get(name)
      if (!model)
        throw new AppError(
          'NOT_FOUND',
          `model '${name}' is not served here; models: ${[...this.current.keys()].join(', ') || '(none)'}`,
        )
      this.current.delete(name)
      const inFlight = this.held.get(model)?.leases ?? 0
      this.opts.logger.info('model unloaded', {
        model: name,
        version: model.version,
        in_flight: inFlight,
      })
      this.retireIfIdle(model)
      this.opts.onChange?.()
      return {
        name,
        state: 'UNAVAILABLE' as const,
        previous_version: model.version,
        previous_in_flight: inFlight,
      }
    })
  }

  /** Resolves when every version released so far has closed its sessions. */
  async released(): Promise<void> {
    await Promise.all([...this.closing])
  }

  /** Closes every version (shutdown: nothing runs any more). */
  async close(): Promise<void> {
    const all = [...this.held.keys()]
    this.held.clear()
    this.current.clear()
    await Promise.all([...all.map((m) => m.close()), ...this.closing])
  }

  private checkNotPinned(name: string): void {
    if (this.opts.pinned?.().has(name))
      throw new AppError(
        'INVALID_REQUEST',
        `model '${name}' generates text (--generation): its engine holds the sessions, so it is not swapped while the runner runs`,
      )
  }

  /** A version that is not current and holds no lease is released now. */
  private retireIfIdle(model: ServedModel): void {
    const h = this.held.get(model)
    if (!h || h.leases > 0 || this.current.get(model.name) === model) return
    this.held.delete(model)
    const closing = model.close().then(
      () =>
        this.opts.logger.info('model version released', {
          model: model.name,
          version: model.version,
        }),
      (err: unknown) =>
        this.opts.logger.error('model version release failed', {
          model: model.name,
          version: model.version,
          ...errorFields(err),
        }),
    )
    this.closing.add(closing)
    void closing.finally(() => this.closing.delete(closing))
  }

  /** Runs repository changes one at a time (a failed one does not block the next). */
  private serially<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task)
    this.queue = run.catch(() => undefined)
    return run
  }
}
