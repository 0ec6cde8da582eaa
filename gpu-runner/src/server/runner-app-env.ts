/**
 * The runner app's per-request variables: its id (x-request-id), the body as read and verified, and the tenant
 * the gateway signed for ('' unsigned).
 * @module
 */
export type RunnerAppEnv = {
  Variables: {
    requestId: string
    body: string
    tenant: string
    /** Set when the request was refused before its body was read: the connection is closed after the answer. */
    bodyUnread: boolean
  }
}
