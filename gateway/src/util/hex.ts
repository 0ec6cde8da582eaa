/**
 * Bytes as lowercase hex, and random ids made of them (crypto.getRandomValues).
 * @module
 */
import { toHex } from '@twinserve/shared'

export function hex(bytes: Uint8Array): string {
  return toHex(bytes)
}

/** `bytes` random bytes as hex (2 characters each). */
export function randomHex(bytes: number): string {
  return hex(crypto.getRandomValues(new Uint8Array(bytes)))
}
