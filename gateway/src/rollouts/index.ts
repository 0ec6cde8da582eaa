/**
 * Versioned rollouts with a canary and automatic rollback (issue #19).
 * @module
 */
export { adminRollouts, rolloutList } from './admin-rollouts.ts'
