/**
 * Bytes as lowercase hex, and random ids made of them (crypto.getRandomValues).
 * @module
 */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

/** `bytes` random bytes as hex (2 characters each). */
export function randomHex(bytes: number): string {
  return hex(crypto.getRandomValues(new Uint8Array(bytes)))
}
