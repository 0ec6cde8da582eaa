/**
 * Whether the caller's key covers a model named in the request body (the OpenAI routes' `model`), checked
 * after the body is read, since the guard only sees path parameters: 403 otherwise, as for a path's model.
 * @module
 */
import { ALL_MODELS, AppError } from '@twinserve/shared'
import type { Context } from 'hono'
import type { AppEnv } from '../app-env.ts'

export function coversModel(c: Context<AppEnv>, model: string): boolean {
  const granted = c.get('principal').models
  return granted.includes(ALL_MODELS) || granted.includes(model)
}

/** 403 unless the key covers `model`; labels the request with it for the counters. */
export function requireModel(c: Context<AppEnv>, model: string): void {
  const rl = c.get('requestLog')
  rl.model = model.slice(0, 128)
  if (!coversModel(c, model)) {
    rl.reject('model')
    throw new AppError('FORBIDDEN', `API key does not cover model '${model.slice(0, 128)}'`)
  }
  rl.modelAuthorized = true
  rl.keyNamesModel = c.get('principal').models.includes(model)
}
