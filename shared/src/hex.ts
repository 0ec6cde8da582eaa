/**
 * Bytes as lowercase hex. A table of every byte's two digits: the gateway formats two digests per request
 * (the API key's, the signed body's) and the signature, and `toString(16).padStart` per byte showed in its CPU
 * profile (issue #17).
 * @module
 */
const HEX_BYTES = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'))

export function toHex(buf: ArrayBuffer | Uint8Array): string {
  const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf)
  let out = ''
  for (const b of bytes) out += HEX_BYTES[b]
  return out
}
