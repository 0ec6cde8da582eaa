export { adminKeys } from './admin-keys.ts'
export { type ApiKeyAuthOptions, apiKeyAuth } from './api-key-auth.ts'
export type { Principal } from './principal.ts'
