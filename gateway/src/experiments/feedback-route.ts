/**
 * `POST /v1/feedback {request_id, reward | label}`: attaches an outcome to an experiment exposure of the caller's
 * tenant (feedback.ts), for keys with the `infer` scope. Mounted at /v1/feedback.
 * @module
 */
import { FeedbackRequestSchema } from '@twinserve/shared'
import { Hono } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { guard } from '../guard.ts'
import { readJsonBody } from '../http/json-body.ts'
import { recordFeedback } from './feedback.ts'

const MAX_FEEDBACK_BYTES = 64 * 1024

export const feedback = new Hono<AppEnv>().post(
  '/',
  guard({ access: 'key', scope: 'infer', countAs: 'feedback', rateLimit: true }),
  async (c) => {
    const { data } = await readJsonBody(c, FeedbackRequestSchema, MAX_FEEDBACK_BYTES)
    return c.json(await recordFeedback(c.env, c.get('config'), c.get('principal'), data))
  },
)
