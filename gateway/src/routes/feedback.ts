import { FeedbackRequestSchema } from '@twinserve/shared'
import { Hono } from 'hono'
import type { AppEnv } from '../env.ts'
import { recordFeedback } from '../experiments/feedback.ts'
import { readJsonBody } from '../lib/json-body.ts'
import { apiKeyAuth } from '../middleware/auth/index.ts'
import { rateLimit } from '../middleware/rate-limit/index.ts'
import { countAs } from '../middleware/request-log/index.ts'

const MAX_FEEDBACK_BYTES = 64 * 1024

/**
 * `POST /v1/feedback {request_id, reward | label}`: attaches an outcome to an experiment exposure of the
 * caller's tenant (experiments/feedback.ts), for keys with the `infer` scope.
 */
export const feedback = new Hono<AppEnv>().post(
  '/v1/feedback',
  countAs('feedback'),
  apiKeyAuth({ scope: 'infer' }),
  rateLimit(),
  async (c) => {
    const { data } = await readJsonBody(c, FeedbackRequestSchema, MAX_FEEDBACK_BYTES)
    return c.json(await recordFeedback(c.env, c.get('config'), c.get('principal'), data))
  },
)
