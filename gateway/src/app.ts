/**
 * The gateway app: request id → log/config → routes; errors become the shared error body.
 * @module
 */
import { AppError } from '@twinserve/shared'
import { Hono } from 'hono'
import { methodNotAllowed } from 'hono/method-not-allowed'
import type { AppEnv } from './env.ts'
import { errorResponse } from './lib/error-response.ts'
import { requestId } from './middleware/request-id/index.ts'
import { requestLogger } from './middleware/request-log/index.ts'
import { adminExperiments } from './routes/admin-experiments.ts'
import { adminKeys } from './routes/admin-keys.ts'
import { adminRunners } from './routes/admin-runners.ts'
import { dashboard } from './routes/dashboard.ts'
import { feedback } from './routes/feedback.ts'
import { health } from './routes/health.ts'
import { metrics } from './routes/metrics.ts'
import { models } from './routes/models.ts'
import { openapi } from './routes/openapi.ts'
import { runnerMembership } from './routes/runner-membership.ts'

export const app = new Hono<AppEnv>()

app.use(requestId())
app.use(requestLogger())
app.use(
  methodNotAllowed({
    app,
    onMethodNotAllowed: (c, allowed) => {
      const res = errorResponse(
        c,
        new AppError(
          'METHOD_NOT_ALLOWED',
          `${c.req.method} is not allowed here; use ${allowed.join(', ')}`,
        ),
      )
      res.headers.set('allow', allowed.join(', '))
      return res
    },
  }),
)
app
  .route('/', health)
  .route('/', models)
  .route('/', adminKeys)
  .route('/', adminRunners)
  .route('/', adminExperiments)
  .route('/', feedback)
  .route('/', dashboard)
  .route('/', metrics)
  .route('/', runnerMembership)
  .route('/', openapi)

app.notFound((c) =>
  errorResponse(c, new AppError('NOT_FOUND', `no route for ${c.req.method} ${c.req.path}`)),
)
app.onError((err, c) => errorResponse(c, err))
