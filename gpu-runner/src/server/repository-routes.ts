/**
 * Triton's model repository extension, for hot swaps (issue #19):
 *
 *   POST /v2/repository/index                 → [{name, version, state}] (a retiring version: UNLOADING)
 *   POST /v2/repository/models/{m}/load       {parameters: {package}} → the package as {m}'s new version
 *   POST /v2/repository/models/{m}/unload     → {m} stops taking requests; those in flight finish
 *
 * Signed like every /v2 route: only the gateway (or an operator with the secret) changes what a runner serves.
 * @see https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_model_repository.md
 * @module
 */
import {
  AppError,
  parseJsonText,
  RepositoryLoadRequestSchema,
  RepositoryUnloadRequestSchema,
} from '@twinserve/shared'
import type { Context, Hono } from 'hono'
import type { AppDeps } from './app-deps.ts'
import type { RunnerAppEnv } from './runner-app-env.ts'

/** The body as text; read as JSON whatever its Content-Type (tritonclient sends these without one). */
function bodyText(c: Context<RunnerAppEnv>): string {
  return new TextDecoder().decode(c.get('body'))
}

export function repositoryRoutes(app: Hono<RunnerAppEnv>, deps: AppDeps): void {
  const { repository } = deps
  // tritonclient POSTs the index with an empty body (its aio twin as octet-stream).
  app.post('/v2/repository/index', (c) =>
    c.json(
      repository.loaded().map(({ model, current }) => ({
        name: model.name,
        version: model.version,
        state: current ? 'READY' : 'UNLOADING',
      })),
    ),
  )
  app.post('/v2/repository/models/:model/load', async (c) => {
    const text = bodyText(c)
    // tritonclient's load_model() without config sends no body: Triton then reloads from its repository.
    if (text.trim() === '')
      throw new AppError(
        'INVALID_REQUEST',
        'load needs a body {"parameters": {"package": "<dir under --repository-root>"}}: this runner loads a package by its directory',
      )
    const body = parseJsonText(text, RepositoryLoadRequestSchema, 'invalid load request')
    return c.json(await repository.load(c.req.param('model'), body.parameters.package))
  })
  app.post('/v2/repository/models/:model/unload', async (c) => {
    const text = bodyText(c)
    if (text.trim() !== '')
      parseJsonText(text, RepositoryUnloadRequestSchema, 'invalid unload request')
    return c.json(await repository.unload(c.req.param('model')))
  })
}
