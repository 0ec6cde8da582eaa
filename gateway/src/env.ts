/**
 * The gateway's bindings and per-request variables: one `AppEnv` generic flows through every handler.
 * @module
 */
export interface Bindings {
  /** Version string reported by `GET /v2`. */
  GATEWAY_VERSION?: string
}

export type AppEnv = {
  Bindings: Bindings
  Variables: { requestId: string }
}
