/**
 * The runner app's per-request variables: its id (x-request-id), the body as read and verified, and the tenant
 * the gateway signed for ('' unsigned).
 * @module
 */
export type RunnerAppEnv = {
  Variables: {
    requestId: string
    /** The body's bytes as sent (a binary tensor body is not text). */
    body: Uint8Array
    tenant: string
    /** Set when the request was refused before its body was read: the connection is closed after the answer. */
    bodyUnread: boolean
  }
}
