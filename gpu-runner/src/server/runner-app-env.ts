/**
 * The runner app's per-request variables: its id (x-request-id) and the body as read and verified.
 * @module
 */
export type RunnerAppEnv = { Variables: { requestId: string; body: string } }
