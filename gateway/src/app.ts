/**
 * The gateway app: request id → access log and config → 405 check → the features' sub-apps, each mounted at its
 * own path and guarded route by route (guard.ts); errors become the shared error body.
 * @module
 */
import { AppError, RUNNER_REGISTRY_BASE } from '@twinserve/shared'
import { Hono } from 'hono'
import { methodNotAllowed } from 'hono/method-not-allowed'
import type { AppEnv } from './app-env.ts'
import { adminKeys } from './auth/index.ts'
import { adminExperiments, DASHBOARD_PATH, dashboard, feedback } from './experiments/index.ts'
import { openai } from './generate/index.ts'
import {
  drainSmallBody,
  errorResponse,
  methodNotAllowedResponse,
  noTransform,
  requestId,
  requestLogger,
} from './http/index.ts'
import { metrics } from './metrics/index.ts'
import { openapi } from './openapi/index.ts'
import { adminRollouts, rolloutList } from './rollouts/index.ts'
import { adminRunners, health, models, repository, runnerMembership } from './routing/index.ts'

export const app = new Hono<AppEnv>()

app.use(requestId())
app.use(requestLogger())
app.use(noTransform())
app.use(methodNotAllowed({ app, onMethodNotAllowed: methodNotAllowedResponse }))
app
  .route('/v2', health)
  .route('/v2/models', models)
  .route('/v2/repository', repository)
  .route('/v1/feedback', feedback)
  .route('/v1', openai)
  .route('/admin/keys', adminKeys)
  .route('/admin/experiments', adminExperiments)
  .route('/admin/runners', adminRunners)
  .route('/admin/models', adminRollouts)
  .route('/admin/rollouts', rolloutList)
  .route('/metrics', metrics)
  .route(RUNNER_REGISTRY_BASE, runnerMembership)
  .route(DASHBOARD_PATH, dashboard)
  .route('/openapi.json', openapi)

// Early answers read a small unread body first, or workerd closes the keep-alive connection (http/drain-body.ts).
app.notFound(async (c) => {
  await drainSmallBody(c.req.raw)
  return errorResponse(c, new AppError('NOT_FOUND', `no route for ${c.req.method} ${c.req.path}`))
})
app.onError(async (err, c) => {
  await drainSmallBody(c.req.raw)
  return errorResponse(c, err)
})
