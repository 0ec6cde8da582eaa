/**
 * The runner's side of the membership protocol (shared/src/schemas/registry.ts): register at start, heartbeat
 * the full state (models, variants, provider, load) at the interval the gateway asks for, and deregister when
 * drained. Every call is signed with the shared secret. A gateway that is down is retried with backoff, never
 * fatal: the runner keeps serving direct traffic, and the next successful heartbeat registers it (the heartbeat
 * body is the full registration and idempotent).
 * @module
 */
import {
  RegistryAckSchema,
  RUNNER_REGISTRY_PATHS,
  type RunnerRegistration,
  signRequest,
} from '@twinserve/shared'
import { errorFields, type Logger } from './logger.ts'

export interface MembershipOptions {
  gatewayUrl: string
  secret: string
  /** The current registration (called for every heartbeat, so load is fresh). */
  state: () => RunnerRegistration
  logger: Logger
  /** Per-call timeout, ms. */
  timeoutMs?: number
  /** Interval before the gateway first acknowledges, and the cap of the retry backoff, ms. */
  retryMaxMs?: number
}

export class Membership {
  private timer?: ReturnType<typeof setTimeout>
  private stopped = false
  private registered = false
  private intervalMs = 5000
  private failures = 0
  /** The call in progress, so that stop() deregisters only after it (else a late heartbeat re-registers). */
  private inflight: Promise<void> = Promise.resolve()

  constructor(private readonly opts: MembershipOptions) {}

  get isRegistered(): boolean {
    return this.registered
  }

  /** Registers now (retrying in the background on failure), then heartbeats. */
  start(): void {
    void this.tick()
  }

  /** Sends a heartbeat right away (e.g. when draining starts, so the gateway stops routing here at once). */
  async beat(): Promise<void> {
    const call = this.inflight.then(() => this.send(this.registered ? 'heartbeat' : 'register'))
    this.inflight = call.catch(() => undefined)
    await this.inflight
  }

  /** Stops heartbeating and deregisters (best effort, bounded by the call timeout). */
  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    await this.inflight
    try {
      await this.post(RUNNER_REGISTRY_PATHS.deregister, { runner_id: this.opts.state().runner_id })
      this.opts.logger.info('deregistered from the gateway', { gateway: this.opts.gatewayUrl })
    } catch (err) {
      this.opts.logger.warn('deregistration failed', {
        gateway: this.opts.gatewayUrl,
        ...errorFields(err),
      })
    }
    this.registered = false
  }

  private async tick(): Promise<void> {
    if (this.stopped) return
    let delay: number
    try {
      const call = this.send(this.registered ? 'heartbeat' : 'register')
      this.inflight = call.catch(() => undefined)
      await call
      this.failures = 0
      delay = this.intervalMs
    } catch (err) {
      this.failures++
      delay = Math.min(this.opts.retryMaxMs ?? 10_000, 250 * 2 ** Math.min(this.failures, 8))
      const log = this.failures === 1 || this.failures % 10 === 0 ? 'warn' : 'debug'
      this.opts.logger[log]('gateway unreachable, retrying', {
        gateway: this.opts.gatewayUrl,
        failures: this.failures,
        retry_in_ms: delay,
        ...errorFields(err),
      })
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), delay)
  }

  private async send(kind: 'register' | 'heartbeat'): Promise<void> {
    const state = this.opts.state()
    const res = await this.post(RUNNER_REGISTRY_PATHS[kind], state).catch((err: unknown) => {
      // A gateway that forgot this runner (expired, restarted) answers the heartbeat with 404: register again.
      if (kind === 'heartbeat' && err instanceof GatewayError && err.status === 404) {
        this.registered = false
        return this.post(RUNNER_REGISTRY_PATHS.register, state)
      }
      throw err
    })
    const ack = RegistryAckSchema.safeParse(res)
    if (!ack.success) throw new Error(`gateway sent an invalid acknowledgement to ${kind}`)
    this.intervalMs = ack.data.heartbeat_interval_ms
    if (!this.registered)
      this.opts.logger.info('registered with the gateway', {
        gateway: this.opts.gatewayUrl,
        runner_id: state.runner_id,
        heartbeat_interval_ms: this.intervalMs,
      })
    this.registered = true
  }

  private async post(path: string, payload: unknown): Promise<unknown> {
    const body = JSON.stringify(payload)
    const headers = await signRequest(this.opts.secret, { method: 'POST', path, body })
    const url = new URL(path, this.opts.gatewayUrl)
    const res = await fetch(url, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body,
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 5000),
    })
    const text = await res.text()
    if (!res.ok)
      throw new GatewayError(res.status, `${path}: HTTP ${res.status} ${text.slice(0, 200)}`)
    try {
      return JSON.parse(text) as unknown
    } catch {
      throw new GatewayError(res.status, `${path}: response is not JSON`)
    }
  }
}

class GatewayError extends Error {
  override readonly name = 'GatewayError'
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}
