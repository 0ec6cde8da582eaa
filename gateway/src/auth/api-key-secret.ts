/**
 * API key tokens: `tsk_` + 43 base64url characters (256 random bits). Only their SHA-256 is stored.
 * @module
 */
import { sha256Hex } from '@twinserve/shared'
import { randomHex } from '../util/hex.ts'

export const API_KEY_PREFIX = 'tsk_'
/** Characters of the token kept in clear to tell keys apart in lists (prefix + 8). */
const DISPLAY_CHARS = API_KEY_PREFIX.length + 8

function base64url(bytes: Uint8Array): string {
  let bin = ''
  for (const b of bytes) bin += String.fromCharCode(b)
  return btoa(bin).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '')
}

export interface NewKeySecret {
  id: string
  token: string
  hash: string
  prefix: string
}

export async function generateKeySecret(): Promise<NewKeySecret> {
  const token = API_KEY_PREFIX + base64url(crypto.getRandomValues(new Uint8Array(32)))
  return {
    id: `key_${randomHex(8)}`,
    token,
    hash: await sha256Hex(token),
    prefix: token.slice(0, DISPLAY_CHARS),
  }
}

/** Whether a bearer token is shaped like one of ours; anything else is rejected before touching D1. */
export function looksLikeKey(token: string): boolean {
  return /^tsk_[A-Za-z0-9_-]{43}$/.test(token)
}
