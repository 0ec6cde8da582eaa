/**
 * Finding the served model a request names, the same for REST and gRPC: an unknown name is NOT_FOUND, listing
 * what this runner serves.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { ServedModel } from '../model/served-model.ts'

/** @throws AppError NOT_FOUND when `name` is not served here */
export function findModel(models: ReadonlyMap<string, ServedModel>, name: string): ServedModel {
  const m = models.get(name)
  if (!m)
    throw new AppError(
      'NOT_FOUND',
      `model '${name}' is not served here; models: ${[...models.keys()].join(', ') || '(none)'}`,
    )
  return m
}
